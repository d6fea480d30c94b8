"""SevenNet (``sevenn``): pretrained names (``7net-0``, ``7net-l3i5``, ...) and ``.pth`` checkpoints.

A SevenNet model is an ``AtomGraphSequential`` whose modules pass one ``AtomGraphData`` dict along
and write into it: node features live in ``data["x"]`` (``mul_ir`` e3nn layout), the self-connection
branch in ``data["self_cont_tmp"]``, the edge radial embedding and spherical harmonics in
``data["edge_embedding"]`` and ``data["edge_attr"]``, the per-atom energy in ``data["atomic_energy"]``.
Each :class:`~irrepprobe.adapters.base.Point` reads its tensor out of that dict and writes a changed
one back, so the forward hook returns the same dict. Every point sits on its own module (the spherical
harmonics on ``edge_embedding.spherical``, the per-edge messages on ``{t}_convolution.convolution``).

One interaction layer ``t`` computes ``gate(SI2(conv(SI1(x))) + SC(x))``: ``{t}_self_interaction_2``
is the layer's own update (role ``update``), ``{t}_equivariant_gate`` the features leaving the layer
(``stream``); the self-connection branch, ``SI1``, the aggregated messages and the pre-gate sum have
role ``inner``. With parity off (every pretrained SevenNet) vectors are ``1e`` and l=1 is in e3nn's
basis (Cartesian x, y, z): a rotation ``R`` acts on it as ``o3.Irreps("1e").D_from_matrix(R) == R``.

Forces come from autograd with respect to the edge vectors: ``predict(..., forces=True)`` runs under
``torch.enable_grad()`` itself and the force module frees the graph unless ``keep_graph`` is set; the
default energy-only predict runs the modules without the force step and without autograd.
Multi-fidelity models (``7net-mf-0``: R2SCAN, PBE) are measured at the fidelity (sevenn's modality)
that :meth:`~irrepprobe.adapters.base.Adapter.choose` sets, written as ``data_modality`` on every graph as
sevenn's calculator does; with several, none is guessed.
Checkpoints are pickles: nothing is unpickled without ``trust``, and :meth:`accepts` reads raw bytes only.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ...intervene import at
from ..base import Adapter, Batch, ForcesOfPredict, Loaded, Point, Quantity, parameters
from .io import accepts, load_checkpoint, looks_like_checkpoint, resolve_name, write_checkpoint
from .runtime import _sevenn, build

__all__ = ["SevenNetAdapter", "looks_like_checkpoint", "resolve_name"]


class SevenNetAdapter(ForcesOfPredict, Adapter):
    name = "sevenn"
    head_flag, family, head_words = "modality", "SevenNet", ("fidelity", "fidelities (modalities)")

    def __init__(self):
        # True: the force module keeps the autograd graph (create_graph), so that the energy returned by
        # predict can be differentiated again (attribution); costs time and memory
        self.keep_graph = False

    # ---------------------------------------------------------------- finding and loading

    def accepts(self, source: str) -> bool:
        return accepts(source)

    def load(self, source: str, trust: bool = False, device: str | torch.device = "cpu") -> Loaded:
        module, config, path, pretrained = load_checkpoint(source, trust)
        return self._loaded(module.to(device), config, pretrained or str(path.resolve()), sha256(path),
                            pretrained=pretrained, path=str(path.resolve()))

    def _loaded(self, module, config: dict, source: str, digest: str | None, **extra) -> Loaded:
        module.eval()
        cutoff = float(config["cutoff"])
        layers = int(config["num_convolution_layer"])
        gates = [module._modules[f"{t}_equivariant_gate"].gate.irreps_out for t in range(layers)]
        hidden = max(gates, key=lambda ir: ir.lmax)
        modal_map = config.get("_modal_map") or {}
        modalities = sorted(modal_map, key=modal_map.get)
        # no default fidelity (sevenn's calculator also refuses to guess): the only one, else choose()
        modal = modalities[0] if len(modalities) == 1 else None
        info = {
            "config": config,  # what untrained() rebuilds from
            "cutoff": cutoff,
            "lmax": int(hidden.lmax),
            "is_parity": bool(config.get("is_parity", False)),
            "channel": int(config.get("channel", hidden.count("0e"))),
            "layers": layers,
            "irreps_hidden": str(hidden),
            "irreps_layers": [str(ir) for ir in gates],
            "elements": sorted(int(z) for z in module.type_map) if module.type_map else [],
            "sevenn_version": config.get("version"),
            "head": modal,  # multi-fidelity models: the modality evaluated (set by choose())
            "heads": modalities,
        }
        info.update(extra)
        return Loaded(module, self, source, digest, Quantity("energy", "eV", "1x0e", per_atom=True), info=info)

    # ---------------------------------------------------------------- points

    def points(self, model: Loaded) -> list[Point]:
        m = model.module
        mods = m._modules
        pts: list[Point] = []
        for name, mod in mods.items():
            cls = type(mod).__name__
            if cls == "EdgeEmbedding":
                pts.append(Point(f"{name}.spherical", f"{name}.spherical", mod.spherical.irreps_out, kind="edge",
                                 role="input"))
                pts.append(Point(name, name, f"{mod.basis_function.num_basis}x0e", kind="edge", role="input",
                                 **at("edge_embedding")))
            elif name == "onehot_to_feature_x":
                pts.append(Point(name, name, mod.irreps_out, role="input", **at("x")))
            elif name.endswith("_self_connection_intro"):
                pts.append(Point(name, name, mod.irreps_out, role="inner", **at("self_cont_tmp")))
            elif name.endswith("_self_interaction_1"):
                pts.append(Point(name, name, mod.irreps_out, role="inner", **at("x")))
            elif name.endswith("_convolution") and cls == "IrrepsConvolution":
                tp = mod.convolution
                pts.append(Point(f"{name}.convolution", f"{name}.convolution", tp.irreps_out, kind="edge",
                                 role="inner"))
                pts.append(Point(name, name, tp.irreps_out, role="inner", **at("x")))
            elif name.endswith("_self_interaction_2"):
                pts.append(Point(name, name, mod.irreps_out, role="update", **at("x")))
            elif name.endswith("_self_connection_outro"):
                t = name.split("_", 1)[0]
                pts.append(Point(name, name, mods[f"{t}_equivariant_gate"].gate.irreps_in, role="inner", **at("x")))
            elif name.endswith("_equivariant_gate"):
                pts.append(Point(name, name, mod.gate.irreps_out, role="stream", **at("x")))
            elif name == "reduce_input_to_hidden":
                pts.append(Point(name, name, mod.irreps_out, role="inner", **at("x")))
            elif name in ("reduce_hidden_to_energy", "readout_FCN"):
                pts.append(Point(name, name, "1x0e", role="inner", **at("scaled_atomic_energy")))
            elif name == "rescale_atomic_energy":
                pts.append(Point(name, name, "1x0e", role="output", **at("atomic_energy")))
        return pts

    def default_points(self, model: Loaded) -> list[str]:
        return [p.name for p in self.points(model)
                if p.kind == "node" and (p.role == "stream" or p.name == "onehot_to_feature_x")]

    # ---------------------------------------------------------------- data

    def graphs(self, model: Loaded, structures, rows) -> list:
        """sevenn's own graphs (as its ASE calculator builds them) of the structures at ``rows``."""
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        cutoff, modal = model.info["cutoff"], model.info.get("head")
        out = []
        for r in rows:
            g = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(structures.atoms(int(r)), cutoff))
            if modal is not None:
                g["data_modality"] = modal
            out.append(g)
        return out

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        from torch_geometric.data import Batch as PygBatch

        _sevenn()
        self.choose(model)  # a multi-fidelity model loaded without choosing one: refused, not guessed
        self._check_elements(model, structures)
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            pyg = PygBatch.from_data_list(self.graphs(model, structures, rows.tolist())).to(model.device)
            atom_batch = pyg.batch
            edge_batch = atom_batch[pyg.edge_index[0]]
            yield Batch(pyg, atom_batch, rows, edge_batch)

    def _check_elements(self, model: Loaded, structures) -> None:
        known = set(model.info.get("elements") or [])
        if not known:
            return
        missing = sorted({int(z) for z in torch.unique(structures.numbers)} - known)
        if missing:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] if z < len(chemical_symbols) else str(z) for z in missing)
            raise IrrepprobeError(f"this SevenNet model knows {len(known)} elements; the data also has {names}")

    # ---------------------------------------------------------------- prediction

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        data = copy.copy(batch.inputs)  # the model writes into its input: keep the batch as it was
        data["edge_vec"] = batch.inputs["edge_vec"].detach()  # a fresh leaf for the force gradient
        if "cell_volume" in data:
            data["cell_volume"] = batch.inputs["cell_volume"].clone()  # clamped in place by force_output
        module = model.module
        if not forces:  # the modules in order, minus the force step: a forward pass without autograd
            with torch.enable_grad() if self.keep_graph else torch.no_grad():
                out = module._preprocess(data)
                for name, m in module._modules.items():
                    if name != "force_output":
                        out = m(out)
            self.keep_forces(model, batch, None)
            energy = out["inferred_total_energy"].reshape(-1, 1)
            return energy if self.keep_graph else energy.detach()
        force = module._modules.get("force_output")
        was = force.training if force is not None else False
        if force is not None and self.keep_graph:
            force.training = True  # create_graph: the graph survives the force gradient
        try:
            with torch.enable_grad():
                out = module(data)
        finally:
            if force is not None:
                force.training = was
        energy = out["inferred_total_energy"].reshape(-1, 1)
        self.keep_forces(model, batch, out["inferred_force"] if "inferred_force" in out else None)
        return energy if self.keep_graph else energy.detach()

    # ---------------------------------------------------------------- control and summary

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded:
        """The same architecture rebuilt by sevenn's builder from the checkpoint's config, every learned
        weight re-drawn under ``torch.manual_seed(seed)`` (the global RNG state is restored afterwards).
        What training does not learn is copied from the trained model: the element map, the per-element
        energy shift and scale and the convolutions' neighbour-count denominators (the config holds a 0
        placeholder for those, which would divide by zero), so energies stay finite and in eV."""
        config = copy.deepcopy(model.info["config"])
        module = build(config, 0 if seed is None else seed)
        trained = dict(model.module.named_parameters())
        with torch.no_grad():
            for name, p in module.named_parameters():
                fixed = (not p.requires_grad or name.startswith("rescale_atomic_energy.")
                         or name.endswith("_convolution.denominator"))
                if fixed and name in trained and trained[name].shape == p.shape:
                    p.copy_(trained[name])
        extra = {k: model.info[k] for k in ("pretrained", "path") if k in model.info}
        loaded = self._loaded(module.to(model.device), config, model.source, model.sha256, untrained=True,
                              seed=seed, **extra)
        loaded.info["head"] = model.info.get("head")
        return loaded

    # ---------------------------------------------------------------- surgery and writing

    suffix = ".pth"

    def why_not_without(self, model: Loaded, drop: list[int]) -> str | None:
        from .surgery import why_not_without

        return why_not_without(model, drop)

    def channel_groups(self, model: Loaded) -> list[tuple[str, tuple[str, ...], str]]:
        from .surgery import channel_groups

        return channel_groups(model)

    def without_orders(self, model: Loaded, drop: list[int], keep: dict | None = None) -> Loaded | None:
        """A model of sevenn's own classes, built by its builder from the config without the orders in
        ``drop`` (the highest ones: lmax lowered, the orders gone from every layer's irreps) and without the
        channels ``keep`` leaves out (point -> block -> channels kept, :meth:`channel_groups`), with every
        weight that connects channels both models have copied (rescaled by e3nn's path normalisations,
        :mod:`irrepprobe.adapters.sevenn.surgery`): it computes what ``model`` computes with the orders and
        channels masked (:func:`irrepprobe.metrics.masked`)."""
        from .surgery import without_orders

        drop = sorted({int(l) for l in drop})
        if (drop or not keep) and self.why_not_without(model, drop):
            return None
        new, config = without_orders(model, drop, keep)
        loaded = self._loaded(new, config, model.source, None,
                              **{k: model.info[k] for k in ("pretrained", "path") if k in model.info})
        loaded.info.update(head=model.info.get("head"), without=drop)
        return loaded

    def write(self, model: Loaded, path) -> Path:
        """``model`` as a sevenn checkpoint (``.pth``: its config and weights) that sevenn's own
        ``SevenNetCalculator`` and ``SevenNetCheckpoint`` load; written atomically."""
        return write_checkpoint(model.module, model.info["config"], path, without=model.info.get("without"),
                                source=model.source)

    def calculator(self, path: str, model: Loaded):
        """sevenn's own ASE calculator on a checkpoint file or pretrained name (MD speed of a pruned file)."""
        from sevenn.calculator import SevenNetCalculator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SevenNetCalculator(model=path, device=model.device, modal=model.info.get("head"))

    def summary(self, model: Loaded) -> str:
        info = model.info
        src = info.get("pretrained") or Path(model.source).name
        fname = Path(info.get("path") or model.source).name
        parity = "on (O(3))" if info["is_parity"] else "off (SO(3): vectors are 1e)"
        last = info["irreps_layers"][-1]
        modal = (f", modality {info['head'] or '(not chosen)'} of {', '.join(info['heads'])}" if info.get("heads")
                 else "")
        return (f"SevenNet {src} ({fname}, trained with sevenn {info.get('sevenn_version')}): NequIP-style "
                f"gated interaction layers with linear self-connections; orders l=0..{info['lmax']}, parity "
                f"{parity}; channels per order {info['irreps_hidden']} ({info['layers']} layers, the last "
                f"leaving {last}); cutoff {info['cutoff']:g} A; {len(info['elements'])} elements{modal}; "
                f"{parameters(model.module):,} parameters" + (" (untrained)" if info.get("untrained") else ""))
