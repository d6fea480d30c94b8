"""MACE (``mace-torch``): ``.model`` files, the whole module pickled by ``mace_run_train``.

A MACE model is a ``MACE`` / ``ScaleShiftMACE`` module: ``node_embedding`` (element one-hot -> scalars),
then per layer ``i`` an ``interactions[i]`` that returns ``(message, sc)`` and a ``products[i]`` that
returns the node features ``products[i].linear(symmetric_contraction(message)) + sc``; ``readouts[i]``
turn each layer's features into per-atom energies. The points, by what MACE computes:

* ``node_embedding`` (role ``input``), ``spherical_harmonics`` and ``radial_embedding`` (edge, ``input``);
* ``interactions.{i}.conv_tp`` (per-edge messages, ``inner``; e3nn models), ``interactions.{i}.message`` (the
  aggregated message, ``inner``, layout ``mul_first``: ``[atoms, mul, (lmax+1)^2]``, every channel
  carrying all orders) and ``interactions.{i}.sc`` (the self-connection, ``inner``; absent in a first
  layer without residual);
* ``products.{i}.symmetric_contractions`` (``inner``), ``products.{i}.linear`` (the layer's own update
  before the residual, ``update``) and ``products.{i}`` (the node features leaving the layer, ``stream``;
  the default points; the last one is scalars only);
* ``readouts.{i}`` (per-atom energy contributions before scale and shift, ``output``).

Models converted to cuequivariance (``mace.cli.convert_e3nn_cueq``) keep the same module tree but lay
features out as ``ir_mul``; their message is ``[atoms, (lmax+1)^2, mul]``, read transposed so that it is
``mul_first`` too. The layout is read from the blocks' own ``cueq_config``.

Batches come from MACE's own pipeline (``config_from_atoms`` -> ``AtomicData.from_config`` with the
model's element table and cutoff -> MACE's ``torch_geometric`` Batch), as its ASE calculator builds them.
:meth:`MACEAdapter.predict` asks for the energy only (``compute_force=False``), so capture runs without
gradients; :meth:`MACEAdapter.forces` runs its own forward with forces. Nothing is unpickled without
``trust``; ``*_compiled.model`` (TorchScript) takes no hooks and is refused.
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from e3nn import o3

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ...intervene import at
from ..base import Adapter, Batch, ForcesOfPredict, Loaded, Point, Quantity, parameters
from .io import accepts, load_model, looks_like_mace, write_model
from .runtime import _mace, build


def _layout(module) -> str:
    """``ir_mul`` for a model converted to cuequivariance with that layout, else ``mul_ir``."""
    cfg = getattr(module.interactions[0], "cueq_config", None)
    if cfg is not None and getattr(cfg, "enabled", False):
        return getattr(cfg, "layout_str", "mul_ir")
    return "mul_ir"


class MACEAdapter(ForcesOfPredict, Adapter):
    name = "mace"
    head_flag, family = "head", "MACE"

    def __init__(self):
        self.keep_graph = False  # predict's energy stays in the graph only when asked (attribution)

    # ---------------------------------------------------------------- finding and loading

    def accepts(self, source: str) -> bool:
        return accepts(source)

    def load(self, source: str, trust: bool = False, device: str | torch.device = "cpu") -> Loaded:
        module, path = load_model(source, trust)
        return self._loaded(module.to(device), str(path.resolve()), sha256(path))

    def _loaded(self, module, source: str, digest: str | None, **extra) -> Loaded:
        module.eval()
        heads = list(getattr(module, "heads", None) or ["Default"])
        # the only head, else the one called "default" (a fine-tuned model's own); else none: choose()
        # refuses to guess (MACE's calculator would take the last)
        head = heads[0] if len(heads) == 1 else next((h for h in heads if h.lower() == "default"), None)
        inter = module.interactions
        info = {
            "cls": type(module).__name__,
            "r_max": float(module.r_max),
            "elements": [int(z) for z in module.atomic_numbers],
            "heads": heads,
            "head": head,
            "layers": len(inter),
            "max_ell": int(inter[0].edge_attrs_irreps.lmax),
            "hidden_irreps": str(inter[0].hidden_irreps if len(inter) == 1 else inter[1].node_feats_irreps),
            "irreps_layers": [str(b.hidden_irreps) for b in inter],  # what products[i] returns
            "layout": _layout(module),
            "dtype": str(next(module.parameters()).dtype).replace("torch.", ""),
        }
        info.update(extra)
        return Loaded(module, self, source, digest, Quantity("energy", "eV", "1x0e", per_atom=True), info=info)

    # ---------------------------------------------------------------- points

    def points(self, model: Loaded) -> list[Point]:
        m, layout = model.module, model.info["layout"]
        first = m.interactions[0]
        pts = [Point("node_embedding", "node_embedding", first.node_feats_irreps, role="input", layout=layout),
               Point("spherical_harmonics", "spherical_harmonics", first.edge_attrs_irreps, kind="edge",
                     role="input"),  # always e3nn's, one copy per order: mul_ir == ir_mul
               Point("radial_embedding", "radial_embedding", first.edge_feats_irreps, kind="edge", role="input",
                     **at(0))]
        for i, (inter, prod) in enumerate(zip(m.interactions, m.products)):
            name = f"interactions.{i}"
            if isinstance(inter.linear_up, o3.Linear):  # e3nn's (channel pruning); cuequivariance's are left out
                pts.append(Point(f"{name}.linear_up", f"{name}.linear_up", inter.linear_up.irreps_out, layout=layout,
                                 role="inner"))
            if isinstance(inter.conv_tp, o3.TensorProduct):
                # per-edge messages; cuequivariance's kernels (fused ones aggregate inside) are left out
                pts.append(Point(f"{name}.conv_tp", f"{name}.conv_tp", inter.conv_tp.irreps_out, kind="edge",
                                 role="inner"))
            if ("Residual" not in type(inter).__name__ and hasattr(inter, "skip_tp")
                    and isinstance(inter.linear, o3.Linear)):  # the message before its element skip
                pts.append(Point(f"{name}.linear", f"{name}.linear", inter.linear.irreps_out, layout=layout,
                                 role="inner"))
            pts.append(Point(f"{name}.message", name, inter.target_irreps, layout="mul_first", role="inner",
                             **at(0, transpose=layout != "mul_ir")))
            if "Residual" in type(inter).__name__:  # the others return sc = None
                pts.append(Point(f"{name}.sc", name, inter.hidden_irreps, layout=layout, role="inner",
                                 **at(1)))
            out = inter.hidden_irreps
            pts += [Point(f"products.{i}.symmetric_contractions", f"products.{i}.symmetric_contractions", out,
                          layout=layout, role="inner"),
                    Point(f"products.{i}.linear", f"products.{i}.linear", out, layout=layout, role="update"),
                    Point(f"products.{i}", f"products.{i}", out, layout=layout, role="stream")]
        n_heads = len(model.info["heads"])
        for i in range(len(m.readouts)):
            pts.append(Point(f"readouts.{i}", f"readouts.{i}", f"{n_heads}x0e", role="output"))
        return pts

    def default_points(self, model: Loaded) -> list[str]:
        return [f"products.{i}" for i in range(len(model.module.products))]

    # ---------------------------------------------------------------- data

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        _mace()
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools, utils

        self.choose(model)  # several heads and none chosen: refused, not guessed
        self._check_elements(model, structures)
        z_table = utils.AtomicNumberTable(model.info["elements"])
        # the info keys MACE's calculator reads (charge and spin embeddings of models that have them)
        keys = mace_data.KeySpecification(info_keys={"total_spin": "spin", "total_charge": "charge"},
                                          arrays_keys={})
        dtype = getattr(torch, model.info["dtype"])
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            with torch_tools.default_dtype(dtype):
                graphs = []
                for r in rows.tolist():
                    config = mace_data.config_from_atoms(structures.atoms(r), key_specification=keys,
                                                         head_name=model.info["head"])
                    graphs.append(mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=model.info["r_max"],
                                                                   heads=model.info["heads"]))
            inputs = torch_geometric.Batch.from_data_list(graphs).to(model.device).to_dict()
            atom_batch = inputs["batch"]
            yield Batch(inputs, atom_batch, rows, atom_batch[inputs["edge_index"][0]])

    def _check_elements(self, model: Loaded, structures) -> None:
        known = set(model.info["elements"])
        missing = sorted({int(z) for z in torch.unique(structures.numbers)} - known)
        if missing:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] if z < len(chemical_symbols) else str(z) for z in missing)
            raise IrrepprobeError(f"this MACE model knows the elements {model.info['elements']}; the data also "
                                  f"has {names}")

    # ---------------------------------------------------------------- prediction

    def _forward(self, model: Loaded, batch: Batch, forces: bool):
        data = dict(batch.inputs)
        data["positions"] = batch.inputs["positions"].detach()  # MACE sets requires_grad on it: keep the batch's
        return model.module(data, training=forces and self.keep_graph, compute_force=forces)

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        with torch.enable_grad() if forces else nullcontext():
            out = self._forward(model, batch, forces=forces)
        self.keep_forces(model, batch, out["forces"] if forces else None)
        energy = out["energy"].reshape(-1, 1)
        return energy if self.keep_graph else energy.detach()

    def labels_of(self, model: Loaded, structures, target: str | None) -> str | None:
        label = super().labels_of(model, structures, target)
        unit = structures.units.get(label, "") if label else ""
        if unit and unit != "eV":
            raise IrrepprobeError(f"label {label!r} is in {unit}; a MACE model predicts the energy in eV")
        return label

    # ---------------------------------------------------------------- control and summary

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded | None:
        """The same architecture rebuilt from the module's own hyperparameters (MACE's
        ``extract_config_mace_model``, as its cuequivariance conversion does), weights drawn under
        ``torch.manual_seed(seed)`` (the global RNG state is restored). What training does not learn
        comes with that config: the per-element energies E0, the scale and shift and the average
        neighbour count, so energies stay in eV. None for classes that function does not rebuild."""
        from mace.tools.scripts_utils import extract_config_mace_model

        config = extract_config_mace_model(model.module)
        if "error" in config:
            return None
        cueq = getattr(model.module.interactions[0], "cueq_config", None)
        if cueq is not None:
            config["cueq_config"] = cueq  # the model itself keeps none: rebuild with the same layout
        module = build(type(model.module), config, getattr(torch, model.info["dtype"]), seed).to(model.device)
        loaded = self._loaded(module, model.source, model.sha256, untrained=True, seed=seed)
        loaded.info["head"] = model.info["head"]  # measured at the trained model's head
        return loaded

    # ---------------------------------------------------------------- pruning (irrepprobe prune --format mace)

    suffix = ".model"

    def why_not_without(self, model: Loaded, drop: list[int]) -> str | None:
        from ...irreps.surgery import why_not_top

        hidden = max(ir.l for _, ir in o3.Irreps(model.info["hidden_irreps"]))
        why = why_not_top(drop, max(model.info["max_ell"], hidden), "MACE",
                          "MACE's spherical harmonics hold every order up to max_ell", "the scalars carry the energy")
        if why:
            return why
        if min(drop) == 1:
            return ("MACE builds its messages from every order of its spherical harmonics (max_ell >= 1), so it has "
                    "no model without l=1; drop the orders above it")
        if model.info["layout"] != "mul_ir":
            return "a model converted to cuequivariance: prune the e3nn model it was converted from"
        return None

    equal_channels = True  # one hidden_irreps for every layer and a channel-wise product: one count for all

    def channel_groups(self, model: Loaded) -> list[tuple[str, tuple[str, ...], str]]:
        from .surgery import channel_groups

        return [] if model.info["layout"] != "mul_ir" else channel_groups(model.module)

    def tied_points(self, model: Loaded) -> list[str]:
        from .surgery import tied_points

        return tied_points(model.module)

    def without_orders(self, model: Loaded, drop: list[int], keep: dict | None = None) -> Loaded | None:
        """A model of MACE's own class, built by its constructor without the orders ``drop`` (the highest:
        ``max_ell`` lowered, the orders gone from ``hidden_irreps``) and without the channels ``keep`` leaves
        out (point -> block -> channels kept, :meth:`channel_groups`), every kept weight copied
        (:mod:`irrepprobe.adapters.mace.surgery`): it computes what the masked model computes."""
        from .surgery import without_orders

        drop = sorted({int(l) for l in drop})
        if (drop or not keep) and self.why_not_without(model, drop):
            return None
        module = without_orders(model.module, drop, getattr(torch, model.info["dtype"]), keep)
        loaded = self._loaded(module.to(model.device), model.source, None, without=drop)
        loaded.info["head"] = model.info["head"]
        return loaded

    def write(self, model: Loaded, path) -> Path:
        """``model`` as a MACE ``.model`` file (the whole module pickled, as ``mace_run_train`` writes it), which
        MACE's own ``MACECalculator`` loads; written atomically."""
        return write_model(model.module, path)

    def calculator(self, path: str, model: Loaded):
        """MACE's own ASE calculator on a ``.model`` file (MD speed of a pruned file)."""
        from mace.calculators import MACECalculator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MACECalculator(model_paths=path, device=str(model.device), default_dtype=model.info["dtype"])

    def summary(self, model: Loaded) -> str:
        info = model.info
        layout = "" if info["layout"] == "mul_ir" else f", cuequivariance layout {info['layout']}"
        head = (f", head {info['head'] or '(not chosen)'} of {', '.join(info['heads'])}" if len(info["heads"]) > 1
                else "")
        from ase.data import chemical_symbols

        elements = " ".join(chemical_symbols[z] for z in info["elements"])
        return (f"MACE {Path(model.source).name} ({info['cls']}): {info['layers']} interactions with "
                f"spherical harmonics up to l={info['max_ell']}; hidden {info['hidden_irreps']}, layers leaving "
                f"{' / '.join(info['irreps_layers'])}; cutoff {info['r_max']:g} A; elements {elements}"
                f"{head}{layout}; {info['dtype']}; {parameters(model.module):,} parameters"
                + (" (untrained)" if info.get("untrained") else ""))


__all__ = ["MACEAdapter", "looks_like_mace"]
