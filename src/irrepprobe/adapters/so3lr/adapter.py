"""SO3LR (``so3krates-torch``): a So3krates transformer with long-range electrostatics and dispersion, its
pretrained weights shipped in the package (``so3lr``), molecules of H, C, N, O, F, P, S and Cl.

SO3LR keeps no e3nn irreps. Each of its ``euclidean_transformers`` layers returns a pair: invariant
features [atoms, 128] and equivariant ones [atoms, 24], the coordinates of degrees 1 to 4 at one channel
each (columns 0:3, 3:8, 8:15, 15:24), each degree in the package's real spherical-harmonic basis (m = -l..l;
for l=1 that is (y, z, x)). A point reads the pair as ``128x0e+1x1o+1x2e+1x3o+1x4e`` in e3nn's basis (the
matrix per degree from :func:`irrepprobe.irreps.basis.to_e3nn`, fitted to the model's own harmonics) and
writes an edited tensor back into the pair. Parity is (-1)^l: the features are built from spherical
harmonics of displacements and invariant contractions only. The edge harmonics are a point too (masking an
order zeroes them there as in every layer).

Input is the package's own: ``AtomicData.from_config`` with the short-range (4.5 A) and long-range (12 A)
neighbour lists, batched by the package's loader, total charge from ``info["charge"]`` and spin from
``info["total_spin"]`` where the data has them (else 0). Energy in eV, forces by autograd inside the forward.
No smaller SO3LR can keep these weights without a degree (see :meth:`SO3LRAdapter.why_not_without`)."""
from __future__ import annotations

import inspect

import numpy as np
import torch

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ...irreps.basis import to_e3nn
from ..base import Adapter, Batch, ForcesOfPredict, Loaded, Point, Quantity, parameters
from . import io

ELEMENTS = (1, 6, 7, 8, 9, 15, 16, 17)  # what SO3LR v1 was trained on (the only embedding columns it moved)
SYMBOLS = "H, C, N, O, F, P, S, Cl"
RENAMED = {"avg_num_neighbors": "avg_num_neighbors_param", "cutoff_fn": "cutoff_fn_name",
           "activation_fn": "activation_fn_name", "energy_activation_fn": "energy_activation_fn_name"}


def _columns(degrees) -> list[tuple[int, slice]]:
    out, start = [], 0
    for l in degrees:
        out.append((int(l), slice(start, start + 2 * int(l) + 1)))
        start += 2 * int(l) + 1
    return out


def _irreps(degrees) -> str:
    return "+".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in degrees)


def _converters(module, offset: int) -> dict:
    """read/write of a tensor whose columns ``offset:`` are the degrees' coordinates, or of a pair
    ``(invariants, coordinates)``: in e3nn's basis out, back in the package's basis."""
    cols = _columns(module.degrees)
    Q = {l: to_e3nn(lambda r, s=s: module.spherical_harmonics(r)[:, s], l) for l, s in cols}

    def convert(ev, forward: bool):
        parts = []
        for l, s in cols:
            q = Q[l].to(ev.dtype) if forward else torch.linalg.inv(Q[l]).to(ev.dtype)
            parts.append(ev[:, s] @ q)
        return torch.cat(parts, 1)

    def read(out):
        if isinstance(out, tuple):
            return torch.cat([out[0], convert(out[1], True)], 1)
        return convert(out, True)

    def write(out, x):
        if isinstance(out, tuple):
            return x[:, :offset].to(out[0].dtype), convert(x[:, offset:], False).to(out[1].dtype)
        return convert(x, False).to(out.dtype)
    return {"read": read, "write": write}


def _detached(v, seen: set):
    if torch.is_tensor(v):
        return v.detach() if v.grad_fn is not None else v
    if id(v) in seen or isinstance(v, (torch.nn.Module, type, str, bytes)):
        return v
    seen.add(id(v))
    if isinstance(v, tuple):
        items = [_detached(x, seen) for x in v]
        return type(v)(*items) if hasattr(v, "_fields") else tuple(items)
    if isinstance(v, list):
        return [_detached(x, seen) for x in v]
    if isinstance(v, dict):
        return {k: _detached(x, seen) for k, x in v.items()}
    if hasattr(v, "__dict__"):
        for k, x in list(vars(v).items()):
            setattr(v, k, _detached(x, seen))
    return v


def _forget(module: torch.nn.Module) -> None:
    """SO3LR's forward keeps its graph tensors as attributes (positions, vectors, a context tuple): detached
    here, so that the module can be copied (a masked model is a deep copy) and holds no graph between passes."""
    seen: set = set()
    for m in module.modules():
        for k, v in list(vars(m).items()):
            if not k.startswith("_"):
                setattr(m, k, _detached(v, seen))


class SO3LRAdapter(ForcesOfPredict, Adapter):
    name, family, needs_grad, suffix = "so3lr", "SO3LR", True, ".model"
    keep_graph = False

    def accepts(self, source: str) -> bool:
        return io.accepts(source)

    def load(self, source, trust=False, device="cpu") -> Loaded:
        module, path = io.load(source, trust)
        return self._loaded(module.to(device), str(path.resolve()), sha256(path),
                            "so3lr" if str(source).lower() == io.NAME else str(path.resolve()))

    def _loaded(self, module, path, digest, source, untrained=False) -> Loaded:
        return Loaded(module, self, source, digest, Quantity("energy", "eV", per_atom=True),
                      info={"path": path, "degrees": [int(l) for l in module.degrees], "elements": list(ELEMENTS),
                            "cutoff": float(module.r_max), "cutoff_lr": module.r_max_lr, "untrained": untrained})

    def points(self, model: Loaded) -> list[Point]:
        m = model.module
        n = int(m.inv_feature_embedding.embedding.out_features)
        deg = _irreps(m.degrees)
        pts = [Point("spherical_harmonics", "spherical_harmonics", deg, kind="edge", role="input",
                     **_converters(m, 0))]
        pts += [Point(f"euclidean_transformers.{i}", f"euclidean_transformers.{i}", f"{n}x0e+{deg}",
                      **_converters(m, n)) for i in range(len(m.euclidean_transformers))]
        return pts

    def default_points(self, model: Loaded) -> list[str]:
        return [p.name for p in self.points(model) if p.kind == "node"]

    def batches(self, model: Loaded, structures, batch_size: int = 64):
        from so3krates_torch.data.atomic_data import AtomicData
        from so3krates_torch.data.utils import KeySpecification, config_from_atoms
        from so3krates_torch.tools import torch_geometric, utils

        bad = sorted(set(structures.elements) - set(ELEMENTS))
        if bad:
            from ase.data import chemical_symbols

            raise IrrepprobeError(f"SO3LR was trained on {SYMBOLS}; the data also has "
                                  f"{', '.join(chemical_symbols[z] for z in bad)}")
        charge = np.asarray(structures.labels.get("charge", np.zeros(len(structures))), dtype=float)
        periodic = structures.pbc.any(1).numpy() & (np.abs(charge) > 1e-9)
        if periodic.any():
            raise IrrepprobeError(f"structure {int(np.flatnonzero(periodic)[0])} is a periodic cell with net charge "
                                  f"{charge[periodic][0]:+g}: SO3LR sums its Coulomb energy in real space (12 A), "
                                  "which has no limit for a charged periodic cell without a neutralising background")
        keys = KeySpecification(info_keys={"total_charge": "charge", "total_spin": "total_spin"}, arrays_keys={})
        z_table = utils.AtomicNumberTable(list(range(1, 119)))
        m = model.module
        for start in range(0, len(structures), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(structures)))
            data = [AtomicData.from_config(config_from_atoms(structures.atoms(int(r)), key_specification=keys),
                                           z_table=z_table, cutoff=float(m.r_max), cutoff_lr=m.r_max_lr)
                    for r in rows]
            pyg = next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=len(data), shuffle=False)))
            pyg = pyg.to(model.device)
            dtype = next(m.parameters()).dtype
            for k in ("positions", "shifts", "shifts_lr", "cell", "node_attrs", "total_charge", "total_spin"):
                if k in pyg and torch.is_floating_point(pyg[k]):
                    pyg[k] = pyg[k].to(dtype)
            atom_batch = pyg["batch"]
            yield Batch(pyg, atom_batch, rows, edge_batch=atom_batch[pyg["edge_index"][0]])

    def predict(self, model: Loaded, batch: Batch, forces: bool = False) -> torch.Tensor:
        data = batch.inputs.clone().to_dict()  # the forward writes into its input (positions get grad)
        with torch.enable_grad():
            # training: the force step keeps its graph, so that fine-tuning can differentiate the forces
            out = model.module(data, compute_force=forces, training=self.keep_graph)
        _forget(model.module)
        self.keep_forces(model, batch, out["forces"] if forces else None)
        return out["energy"].reshape(-1, 1)

    def untrained(self, model: Loaded, seed: int | None = None) -> Loaded:
        """SO3LR rebuilt from its own constructor arguments (stored on the module) and re-initialised."""
        m = model.module
        cls = type(m)
        kw = {}
        for base in cls.__mro__:  # SO3LR passes the rest of its arguments on to So3krates
            if not base.__module__.startswith("so3krates_torch") or "__init__" not in vars(base):
                continue
            for name, p in inspect.signature(base.__init__).parameters.items():
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in kw \
                        and hasattr(m, RENAMED.get(name, name)):
                    kw[name] = getattr(m, RENAMED.get(name, name))
        dtype = torch.get_default_dtype()
        torch.manual_seed(0 if seed is None else seed)
        try:
            net = cls(**kw)
        finally:
            torch.set_default_dtype(dtype)  # the constructor sets the global default
        net.r_max_lr, net.dispersion_energy_cutoff_lr_damping = m.r_max_lr, m.dispersion_energy_cutoff_lr_damping
        return self._loaded(net.float().eval().to(model.device), model.info["path"], model.sha256, model.source, True)

    def why_not_without(self, model: Loaded, drop: list[int]) -> str:
        return ("SO3LR's attention gives each degree one head of its 128 invariant channels (4 x 32) and its filters "
                "take one input per degree: a model without a degree has other head shapes (128 is not divisible by "
                "3), so no smaller SO3LR keeps these weights. Masking a degree (the recovery leg) works.")

    def summary(self, model: Loaded) -> str:
        m = model.module
        return (f"SO3LR ({'untrained, ' if model.info.get('untrained') else ''}so3krates-torch): "
                f"{len(m.euclidean_transformers)} Euclidean transformer layers, 128 invariant channels, degrees "
                f"{', '.join(map(str, m.degrees))} at one channel each, cutoff {float(m.r_max):g} A, long range "
                f"{m.r_max_lr:g} A (electrostatics and dispersion), elements {SYMBOLS}, {parameters(m):,} parameters")
