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

import os
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from e3nn import o3

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ..base import Adapter, Batch, ForcesOfPredict, Loaded, Point, Quantity, parameters
from ...fileio import check_file, describe, kind_of, pickle_bytes, refuse_untrusted, torch_load, zip_names

_MARKER = b"mace.modules.models"  # the module of MACE's model classes, as the pickle names it
_HEAD_BYTES = 1 << 20  # the top module's class comes first in the pickle
_NEEDS_MACE = "loading MACE models needs the mace-torch package: pip install mace-torch"


def _mace():
    """Import mace without keeping what its import does to the process: ``import mace`` sets
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which would turn every later ``torch.load`` that does not
    name ``weights_only`` into a full unpickling. irrepprobe unpickles only with ``trust``."""
    saved = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    try:
        import mace  # noqa: F401
        import mace.data  # noqa: F401
        import mace.modules  # noqa: F401
    except ImportError:
        raise IrrepprobeError(_NEEDS_MACE) from None
    finally:
        if saved is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved


def _is_compiled_mace(path: Path) -> bool:
    """A TorchScript MACE (``*_compiled.model``): its archive holds the scripted code of mace's modules."""
    return any("__torch__/mace/" in n for n in zip_names(path))


def looks_like_mace(path) -> bool:
    """Whether ``path`` is a pickled MACE module, from the raw bytes of its pickle (no unpickling)."""
    raw = pickle_bytes(path, _HEAD_BYTES)
    return raw is not None and _MARKER in raw


def _layout(module) -> str:
    """``ir_mul`` for a model converted to cuequivariance with that layout, else ``mul_ir``."""
    cfg = getattr(module.interactions[0], "cueq_config", None)
    if cfg is not None and getattr(cfg, "enabled", False):
        return getattr(cfg, "layout_str", "mul_ir")
    return "mul_ir"


def build(cls, config: dict, dtype: torch.dtype, seed: int | None = None):
    """``cls(**config)`` in ``dtype``, weights drawn under ``torch.manual_seed(seed)`` with the global RNG
    state and default dtype restored: MACE's constructors read both."""
    saved = torch.get_default_dtype()
    try:  # e3nn 0.4 scripts its generated code while building, with TorchScript's warnings
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.set_default_dtype(dtype)
            torch.manual_seed(0 if seed is None else seed)
            module = cls(**config)
    finally:
        torch.set_default_dtype(saved)
    return module.to(dtype=dtype)


class MACEAdapter(ForcesOfPredict, Adapter):
    name = "mace"
    head_flag, family = "head", "MACE"

    def __init__(self):
        self.keep_graph = False  # predict's energy stays in the graph only when asked (attribution)

    # ---------------------------------------------------------------- finding and loading

    def accepts(self, source: str) -> bool:
        path = Path(str(source))
        if not path.is_file():
            return False
        kind = kind_of(path)
        if kind == "torchscript":
            return _is_compiled_mace(path)  # accepted so that load() can say what to give instead
        return kind in ("torch-zip", "pickle") and looks_like_mace(path)

    def load(self, source: str, trust: bool = False, device: str | torch.device = "cpu") -> Loaded:
        path = check_file(Path(str(source)))
        kind = kind_of(path)
        if kind == "torchscript":
            eager = path.name.replace("_compiled.model", ".model") if path.name.endswith("_compiled.model") \
                else "the .model file"
            raise IrrepprobeError(f"{path} is a compiled (TorchScript) MACE model, which takes no hooks: give "
                                  f"{eager}, the pickled module it was compiled from")
        if kind not in ("torch-zip", "pickle"):
            raise IrrepprobeError(f"{path} is not a PyTorch file ({describe(kind)})")
        refuse_untrusted(path, trust, "this MACE model file")  # before mace or anything else unpickles
        _mace()
        try:
            module = torch_load(path, trust, "this MACE model file")
        except ModuleNotFoundError as e:  # a cuequivariance model without cuequivariance installed
            raise IrrepprobeError(f"{path} needs the package {e.name!r} to load (a model converted to "
                                  "cuequivariance: pip install cuequivariance-torch)") from None
        if isinstance(module, dict):
            raise IrrepprobeError(f"{path} holds a dict (a training checkpoint or a state dict), not a MACE "
                                  "module: give the .model file mace_run_train writes")
        if not (isinstance(module, torch.nn.Module) and type(module).__module__.startswith("mace.")
                and hasattr(module, "interactions") and hasattr(module, "products")):
            raise IrrepprobeError(f"{path} is not a MACE model (it holds a {type(module).__name__})")
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
                     read=_item(0), write=_put(0))]
        for i, (inter, prod) in enumerate(zip(m.interactions, m.products)):
            name = f"interactions.{i}"
            if isinstance(inter.conv_tp, o3.TensorProduct):
                # per-edge messages; cuequivariance's kernels (fused ones aggregate inside) are left out
                pts.append(Point(f"{name}.conv_tp", f"{name}.conv_tp", inter.conv_tp.irreps_out, kind="edge",
                                 role="inner"))
            msg_read, msg_write = (_item(0), _put(0)) if layout == "mul_ir" else (_item_t(0), _put_t(0))
            pts.append(Point(f"{name}.message", name, inter.target_irreps, layout="mul_first", role="inner",
                             read=msg_read, write=msg_write))
            if "Residual" in type(inter).__name__:  # the others return sc = None
                pts.append(Point(f"{name}.sc", name, inter.hidden_irreps, layout=layout, role="inner",
                                 read=_item(1), write=_put(1)))
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
        self.keep_forces(batch, out["forces"] if forces else None)
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

    def without_orders(self, model: Loaded, drop: list[int]) -> Loaded | None:
        """A model of MACE's own class, built by its constructor without the orders ``drop`` (the highest:
        ``max_ell`` lowered, the orders gone from ``hidden_irreps``), every kept weight copied
        (:mod:`irrepprobe.adapters.mace.surgery`): it computes what the masked model computes."""
        from .surgery import without_orders

        drop = sorted({int(l) for l in drop})
        if self.why_not_without(model, drop):
            return None
        module = without_orders(model.module, drop, getattr(torch, model.info["dtype"]))
        loaded = self._loaded(module.to(model.device), model.source, None, without=drop)
        loaded.info["head"] = model.info["head"]
        return loaded

    def write(self, model: Loaded, path) -> Path:
        """``model`` as a MACE ``.model`` file (the whole module pickled, as ``mace_run_train`` writes it), which
        MACE's own ``MACECalculator`` loads; written atomically."""
        from ...fileio import save_torch

        return save_torch(model.module, path)

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


def _item(k: int):
    def read(out):
        return out[k]
    return read


def _put(k: int):
    def write(out, x):
        out = list(out)
        out[k] = x
        return tuple(out)
    return write


def _item_t(k: int):
    """cuequivariance's ``ir_mul`` message ``[atoms, D, mul]``, read as ``mul_first`` ``[atoms, mul, D]``."""
    def read(out):
        return out[k].transpose(1, 2)
    return read


def _put_t(k: int):
    def write(out, x):
        out = list(out)
        out[k] = x.transpose(1, 2)
        return tuple(out)
    return write


__all__ = ["MACEAdapter", "looks_like_mace"]
