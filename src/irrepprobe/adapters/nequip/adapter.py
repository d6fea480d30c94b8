"""NequIP and Allegro (``nequip``, ``nequip-allegro``): training checkpoints (``.ckpt``) and packages
(``.nequip.zip``), both loaded by nequip's own ``load_saved_model``.

A model is a ``GraphModel`` around ``ForceStressOutput`` around a ``SequentialGraphNetwork``
(``model.func``) whose modules pass one ``AtomicDataDict`` along and write into it; each module's
``irreps_out`` is a dict of fields. A :class:`~irrepprobe.adapters.base.Point` reads its field out of
that dict (and writes a changed one back), so the forward hook returns the same dict.

* NequIP: ``layer{i}_convnet`` computes ``gate(linear_2(conv(linear_1(x))) + sc(x))`` (plus ``x`` when
  its ``resnet`` flag is on). Its output ``node_features`` is the stream; ``conv.linear_2`` is the
  layer's own update before the self-connection is added (role ``update``, as SevenNet's
  ``self_interaction_2``), ``conv.sc`` that branch, ``conv`` the pre-gate sum (both ``inner``).
* Allegro: every equivariant feature lives per edge. ``allegro.tps[i]`` returns the tensor track
  ``[edges, tracks, sum of 2l+1]`` (multiplicity 1 per irrep within a track, i.e. irrepprobe's
  ``mul_first`` layout with ``tracks`` channels of every irrep); ``allegro.latents[i]`` returns the scalar
  track (its first ``num_scalar_features`` columns) followed by the next layer's environment weights.
  Only scalars leave the Allegro module. Edge points are pooled per structure through the edge's centre
  atom (``edge_index[0]``).

Checkpoints and packages are pickles: nothing is unpickled without ``trust``, and :meth:`accepts` reads
raw bytes and archive member names only. Compiled models (``.nequip.pth`` TorchScript, ``.nequip.pt2``
AOTInductor) run outside Python modules, so they take no hooks and are refused with what to give instead.
Packaged models bring their own copy of nequip's classes, so modules are recognised by their attributes
and names, never by ``isinstance``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from e3nn import o3

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ...intervene import at, leading
from ..base import Adapter, Batch, ForcesOfPredict, Loaded, Point, Quantity, parameters
from .io import _symbols_to_numbers, file_kind, load_model, read_checkpoint, write_checkpoint
from .runtime import _nequip, _nequip_state, build


class NequIPAdapter(ForcesOfPredict, Adapter):
    name = "nequip"

    def __init__(self):
        # True: the force step keeps the autograd graph (create_graph), so that the energy returned by
        # predict can be differentiated again (attribution); costs time and memory
        self.keep_graph = False

    # ---------------------------------------------------------------- finding and loading

    def accepts(self, source: str) -> bool:
        path = Path(str(source))
        return path.is_file() and file_kind(path) is not None

    def load(self, source: str, trust: bool = False, device: str | torch.device = "cpu") -> Loaded:
        module, info_dict, path, fkind = load_model(source, trust)
        return self._loaded(module.to(device), info_dict, str(path.resolve()), sha256(path), file=fkind)

    def _loaded(self, module, info_dict: dict, source: str, digest: str | None, **extra) -> Loaded:
        module.eval()
        func = module.model.func  # GraphModel -> ForceStressOutput -> SequentialGraphNetwork
        mods = func._modules
        metadata = module.metadata
        type_names = metadata["type_names"].split(" ")
        model_cfg = (info_dict.get("training_module") or {}).get("model") or {}
        data_cfg = info_dict.get("data") or {}
        # the label that training mapped onto total_energy (e.g. QM9's u0_atom): the model's own quantity
        trained_on = next((k for k, v in (data_cfg.get("key_mapping") or {}).items() if v == "total_energy"), None)
        if "allegro" in mods and hasattr(mods["allegro"], "tps"):
            a = mods["allegro"]
            family, layers = "Allegro", len(a.tps)
            tracks = [str(_track_irreps(tp, a.num_tensor_features)) for tp in a.tps]
            hidden = max((o3.Irreps(t) for t in tracks), key=lambda ir: (ir.lmax, ir.dim))
            extra.update(num_scalar_features=int(a.num_scalar_features),
                         num_tensor_features=int(a.num_tensor_features))
        else:
            convs = sorted((n for n in mods if n.startswith("layer") and n.endswith("_convnet")),
                           key=lambda n: int(n[5:-8]))
            if not convs:
                raise IrrepprobeError(f"{source}: a NequIP-framework model that is neither NequIP (layer*_convnet) "
                                      f"nor Allegro (allegro.tps); its modules: {', '.join(mods)}")
            family, layers = "NequIP", len(convs)
            tracks = [str(mods[n].irreps_out["node_features"]) for n in convs]
            hidden = max((o3.Irreps(t) for t in tracks), key=lambda ir: (ir.lmax, ir.dim))
        info = {
            "family": family,
            "config": model_cfg,  # what untrained() rebuilds from
            "info_dict": info_dict,
            "cutoff": float(metadata["r_max"]),
            "metadata": dict(metadata),
            "type_names": type_names,
            "elements": _symbols_to_numbers(type_names),
            "model_dtype": metadata.get("model_dtype"),
            "layers": layers,
            "lmax": int(hidden.lmax),
            "irreps_hidden": str(hidden),
            "irreps_layers": tracks,
            "do_derivatives": bool(getattr(module.model, "do_derivatives", False)),
            "trained_on": trained_on,
            "nequip_version": (info_dict.get("versions") or {}).get("nequip"),
        }
        info.update(extra)
        quantity = Quantity(trained_on or "energy", "eV", "1x0e", per_atom=True)
        return Loaded(module, self, source, digest, quantity, info=info)

    # ---------------------------------------------------------------- points

    def points(self, model: Loaded) -> list[Point]:
        func = model.module.model.func
        mods, pre = func._modules, "model.func."
        pts: list[Point] = []
        if model.info["family"] == "Allegro":
            a = mods["allegro"]
            if "scalar_embed_mlp" in mods:
                pts.append(_field("scalar_embed_mlp", pre, "edge_embedding", mods["scalar_embed_mlp"], "edge", "input"))
            if "tensor_embed" in mods:
                ir = mods["tensor_embed"].irreps_out["edge_features"]
                pts.append(Point("tensor_embed", pre + "tensor_embed", _strided(ir, a.num_tensor_features), kind="edge",
                                 layout="mul_first", role="input", **at("edge_features")))
            n = int(a.num_scalar_features)
            for i, tp in enumerate(a.tps):
                pts.append(Point(f"allegro.tps.{i}", f"{pre}allegro.tps.{i}", _track_irreps(tp, a.num_tensor_features),
                                 kind="edge", layout="mul_first", role="stream"))
                pts.append(Point(f"allegro.latents.{i}", f"{pre}allegro.latents.{i}", f"{n}x0e", kind="edge",
                                 role="stream", **leading(n)))
            pts.append(_field("allegro", pre, "edge_features", a, "edge", "inner"))
            for name, field, kind, role in (("edge_readout", "edge_energy", "edge", "inner"),
                                            ("edge_eng_sum", "atomic_energy", "node", "inner"),
                                            ("per_type_energy_scale_shift", "atomic_energy", "node", "output")):
                if name in mods:
                    pts.append(_field(name, pre, field, mods[name], kind, role))
            return pts
        if "type_embed" in mods:
            pts.append(_field("type_embed", pre, "node_features", mods["type_embed"], "node", "input"))
        if "spharm" in mods:
            pts.append(_field("spharm", pre, "edge_attrs", mods["spharm"], "edge", "input"))
        embed = "factor" if "factor" in mods else "bessel_encode" if "bessel_encode" in mods else None
        if embed:
            pts.append(_field(embed, pre, "edge_embedding", mods[embed], "edge", "input"))
        for name in (n for n in mods if n.startswith("layer") and n.endswith("_convnet")):
            layer = mods[name]
            conv = layer.conv
            pts.append(_field(f"{name}.conv", pre, "node_features", conv, "node", "inner"))
            if getattr(conv, "sc", None) is not None:
                # the messages before the self-connection is added: the layer's own update, unless the
                # layer also has a residual around the gate, whose update is the gate's output
                pts.append(Point(f"{name}.conv.linear_2", f"{pre}{name}.conv.linear_2", conv.linear_2.irreps_out,
                                 role="inner" if layer.resnet else "update"))
                pts.append(Point(f"{name}.conv.sc", f"{pre}{name}.conv.sc", conv.sc.irreps_out, role="inner"))
            if layer.resnet:
                nl = layer.equivariant_nonlin
                pts.append(Point(f"{name}.equivariant_nonlin", f"{pre}{name}.equivariant_nonlin", nl.irreps_out,
                                 role="update"))
            pts.append(_field(name, pre, "node_features", layer, "node", "stream"))
        for name, role in (("per_atom_energy_readout", "inner"), ("per_type_energy_scale_shift", "output")):
            if name in mods:
                pts.append(_field(name, pre, "atomic_energy", mods[name], "node", role))
        return pts

    def default_points(self, model: Loaded) -> list[str]:
        keep = ("tensor_embed",) if model.info["family"] == "Allegro" else ("type_embed",)
        return [p.name for p in self.points(model) if p.role == "stream" or p.name in keep]

    # ---------------------------------------------------------------- data

    def transforms(self, model: Loaded) -> list:
        """nequip's own transforms for the model (as its ASE calculator builds them): element -> type
        index by the model's type names, and the neighbour list at the model's cutoff (per edge type when
        the model has per-edge-type cutoffs)."""
        from nequip.integrations.utils import basic_transforms

        names = model.info["type_names"]
        return basic_transforms(model.info["metadata"], model.info["cutoff"], names, {t: t for t in names})

    def graphs(self, model: Loaded, structures, rows, transforms=None) -> list[dict]:
        """One AtomicDataDict per structure at ``rows``, geometry only (labels stay out of the model)."""
        from ase import Atoms
        from nequip.data import from_ase

        transforms = self.transforms(model) if transforms is None else transforms
        out = []
        for r in rows:
            a = structures.atoms(int(r))
            data = from_ase(Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc))
            for t in transforms:
                data = t(data)
            out.append(data)
        return out

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        _nequip()
        from nequip.data import AtomicDataDict

        self._check_elements(model, structures)
        with _nequip_state():
            transforms = self.transforms(model)
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            with _nequip_state():
                data = AtomicDataDict.batched_from_list(self.graphs(model, structures, rows.tolist(), transforms))
            data = AtomicDataDict.to_(data, model.device)
            atom_batch = data["batch"]
            edge_batch = atom_batch[data["edge_index"][0]]  # an edge belongs to its centre atom's structure
            yield Batch(data, atom_batch, rows, edge_batch)

    def _check_elements(self, model: Loaded, structures) -> None:
        known = model.info.get("elements")
        if known is None:
            raise IrrepprobeError(f"this {model.info['family']} model's type names "
                                  f"({' '.join(model.info['type_names'])}) are not chemical symbols, so irrepprobe "
                                  "cannot map atoms onto them")
        missing = sorted({int(z) for z in torch.unique(structures.numbers)} - set(known))
        if missing:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] if z < len(chemical_symbols) else str(z) for z in missing)
            raise IrrepprobeError(f"this {model.info['family']} model knows {' '.join(model.info['type_names'])}; "
                                  f"the data also has {names}")

    # ---------------------------------------------------------------- prediction

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        data = dict(batch.inputs)  # the model's top level copies it too; keep the batch as it was
        data["pos"] = batch.inputs["pos"].detach()  # ForceStressOutput sets requires_grad on its input
        fso = model.module.model
        derivatives = model.info["do_derivatives"] and forces
        was, did = fso.training, getattr(fso, "do_derivatives", False)
        if derivatives and self.keep_graph:
            fso.training = True  # its autograd step then uses create_graph: the graph survives it
        if not derivatives:
            fso.do_derivatives = False  # energy only: ForceStressOutput short-circuits to its energy model
        try:
            with torch.enable_grad() if derivatives or self.keep_graph else torch.no_grad():
                out = model.module(data)
        finally:
            fso.training, fso.do_derivatives = was, did
        energy = out["total_energy"].reshape(-1, 1)
        self.keep_forces(model, batch, out.get("forces") if derivatives else None)
        return energy if self.keep_graph else energy.detach()

    # ---------------------------------------------------------------- control and summary

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded:
        """The same architecture rebuilt by nequip's model builder from the saved training config, with
        ``seed`` as the builder's seed (None: the config's own seed, i.e. the weights training began
        from). What training does not learn is copied from the trained model, so energies stay in eV:
        every buffer (per-type energy shifts and scales, neighbour-count normalisation, radial basis) and
        the per-type scale/shift module's parameters (learned only when made trainable)."""
        cfg = copy.deepcopy(model.info["config"])
        if not cfg.get("_target_"):
            raise IrrepprobeError(f"{model.source} holds no model config to rebuild an untrained control from")
        if seed is not None:
            cfg["seed"] = int(seed)
        module = build(cfg, f"rebuild {model.source} from its config")
        trained = dict(model.module.named_buffers()) | {
            n: p for n, p in model.module.named_parameters() if ".per_type_energy_scale_shift." in f".{n}"}
        with torch.no_grad():
            for name, t in list(module.named_buffers()) + list(module.named_parameters()):
                if name in trained and trained[name].shape == t.shape:
                    t.copy_(trained[name])
        extra = {k: model.info[k] for k in ("file",) if k in model.info}
        return self._loaded(module.to(model.device), model.info["info_dict"], model.source, model.sha256,
                            untrained=True, seed=seed, **extra)

    # ---------------------------------------------------------------- pruning (irrepprobe prune --format nequip)

    suffix = ".ckpt"

    def why_not_without(self, model: Loaded, drop: list[int]) -> str | None:
        from ...irreps.surgery import why_not_top

        if drop and 0 not in drop and model.info["family"] != "NequIP":
            return ("Allegro's tensor tracks couple every order in each layer's tensor product, with weights shared "
                    "across its paths; irrepprobe has no surgery for them")
        why = why_not_top(drop, model.info["lmax"], "NequIP",
                          "NequIP's spherical harmonics and hidden irreps hold every order up to l_max")
        if why:
            return why
        if model.info.get("file") != "checkpoint" and not model.info.get("ckpt"):
            return "a nequip package: prune the nequip-train checkpoint (.ckpt) it was packaged from"
        if not model.info["config"].get("_target_"):
            return "the checkpoint holds no model config to rebuild the model from"
        return None

    def without_orders(self, model: Loaded, drop: list[int]) -> Loaded | None:
        """A model of nequip's own classes, built by its builder from the checkpoint's config with ``l_max``
        lowered, every kept weight copied (:mod:`irrepprobe.adapters.nequip.surgery`): it computes what the
        masked model computes."""
        from .surgery import without_orders

        drop = sorted({int(l) for l in drop})
        if self.why_not_without(model, drop):
            return None
        module, cfg = without_orders(model.module, model.info["config"], drop)
        info_dict = copy.deepcopy(model.info["info_dict"])
        info_dict.setdefault("training_module", {})["model"] = cfg
        loaded = self._loaded(module.to(model.device), info_dict, model.source, None, file="checkpoint",
                              ckpt=model.info.get("ckpt") or model.source, without=drop)
        return loaded

    def write(self, model: Loaded, path) -> Path:
        """``model`` as a nequip-train checkpoint (``.ckpt``) that nequip's own loader
        (``load_saved_model``, ``nequip-compile``, ``nequip-package``) reads, built from the checkpoint the
        model came from; written atomically."""
        source = Path(model.info.get("ckpt") or model.source)
        write_checkpoint(read_checkpoint(source), model.info["config"], model.module.state_dict(),
                         list(model.module.parameters()), path, model.info.get("without", []))
        return Path(path)

    # MD speed of a pruned file needs the family's own ASE calculator; nequip's runs compiled models only,
    # TorchScript compilation is gone from PyTorch >= 2.10, and nequip-compile's AOTInductor mode failed on
    # these models here (shape guards while exporting): say so rather than time something else
    no_calculator = ("nequip's ASE calculator runs compiled models only, and nequip-compile (AOTInductor; "
                     "TorchScript is gone from PyTorch >= 2.10) failed to export these models in this environment")

    def summary(self, model: Loaded) -> str:
        info = model.info
        kind = {"checkpoint": "checkpoint", "package": "package"}.get(info.get("file"), "file")
        head = (f"{info['family']} {kind} {Path(model.source).name} (nequip {info.get('nequip_version')}, "
                f"{info.get('model_dtype')}): {info['layers']} layers, orders l=0..{info['lmax']}, ")
        if info["family"] == "Allegro":
            body = (f"per-edge tensor tracks {' -> '.join(info['irreps_layers'])} ({info['num_tensor_features']} "
                    f"tracks) and {info['num_scalar_features']} scalar features per edge; ")
        else:
            body = f"node features per layer {' -> '.join(info['irreps_layers'])}; "
        trained = f"; trained on {info['trained_on']} as total energy" if info.get("trained_on") else ""
        return (head + body + f"cutoff {info['cutoff']:g} A; types {' '.join(info['type_names'])}"
                f"{trained}; forces {'by autograd' if info['do_derivatives'] else 'off'}; "
                f"{parameters(model.module):,} parameters" + (" (untrained)" if info.get("untrained") else ""))


def _track_irreps(tp, tracks: int) -> o3.Irreps:
    """An Allegro tensor product's output as irreps: ``tracks`` channels of every irrep it carries."""
    return _strided(tp.irreps_out, tracks)


def _strided(irreps, tracks: int) -> o3.Irreps:
    return o3.Irreps([(int(tracks), ir) for _, ir in o3.Irreps(irreps)])


def _field(name: str, pre: str, field: str, module, kind: str, role: str) -> Point:
    return Point(name, pre + name, module.irreps_out[field], kind=kind, role=role, **at(field))
