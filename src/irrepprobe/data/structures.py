"""Structures of any origin as flat arrays: QM9 by name, or any file ASE reads (extxyz first).

A :class:`Structures` holds atomic numbers, positions, cells and labels (per structure from
``atoms.info`` and calculator results, per atom from ``atoms.arrays``). Adapters turn it into their
model's own batches; captures keep the labels and the composition, so that metrics never need the
source again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import IrrepprobeError

# Keys ASE stores itself; never offered as labels.
_ASE_ARRAYS = {"numbers", "positions", "momenta", "masses", "initial_magmoms", "initial_charges", "tags"}
_QM9_Z = (1, 6, 7, 8, 9)
# calculator results that are one value per structure whatever their length (a dipole of a 3-atom molecule
# is not per atom)
_PER_STRUCTURE_RESULTS = {"energy", "free_energy", "dipole", "stress", "magmom", "dielectric_tensor",
                          "polarizability"}


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atoms_of(ptr: torch.Tensor, rows) -> torch.Tensor:
    """The atom indices of structures ``rows`` (in that order), where structure ``i`` owns atoms
    ``ptr[i]:ptr[i+1]``."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    counts = ptr[rows + 1] - ptr[rows]
    start = torch.repeat_interleave(ptr[rows], counts)
    offset = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return start + offset


@dataclass
class Structures:
    """``n`` structures; structure ``i`` owns atoms ``ptr[i]:ptr[i+1]``."""

    numbers: torch.Tensor  # [atoms] int64 atomic numbers
    pos: torch.Tensor  # [atoms, 3] float64, Angstrom
    ptr: torch.Tensor  # [n + 1] int64
    cell: torch.Tensor  # [n, 3, 3] float64 (zeros: no cell)
    pbc: torch.Tensor  # [n, 3] bool
    ids: np.ndarray  # [n] int64: index in the source (QM9 index into the cache, or frame in the file)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # [n], [n, 3] or [n, 3, 3] float64
    atom_labels: dict[str, np.ndarray] = field(default_factory=dict)  # [atoms, ...] float64
    units: dict[str, str] = field(default_factory=dict)
    source: str = ""  # "qm9:test", or the file path
    sha256: str | None = None  # of the source file
    # labels that are not on every structure (or not of one shape): [n] object arrays, per structure its
    # value or None. Not usable as labels; kept so that messages can say where they are, and so that a
    # selection of structures that all carry one (``take``) has it as a label again
    partial_labels: dict[str, np.ndarray] = field(default_factory=dict)
    partial_atom_labels: dict[str, np.ndarray] = field(default_factory=dict)  # per structure [atoms, ...]

    def __len__(self) -> int:
        return self.ptr.numel() - 1

    @property
    def n_atoms(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def structure_of_atom(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self)), self.n_atoms)

    @property
    def elements(self) -> list[int]:
        """The atomic numbers present, sorted."""
        return sorted(int(z) for z in torch.unique(self.numbers))

    def composition(self, elements: list[int] | None = None) -> np.ndarray:
        """[n, elements] counts of each element per structure."""
        elements = elements or self.elements
        z, mol = self.numbers.numpy(), self.structure_of_atom().numpy()
        known = np.isin(z, elements)
        counts = np.zeros((len(self), len(elements)))
        order = np.argsort(elements)  # column of each atom's element, in the order of ``elements``
        np.add.at(counts, (mol[known], order[np.searchsorted(np.asarray(elements)[order], z[known])]), 1)
        return counts

    def scalar_labels(self) -> list[str]:
        return [k for k, v in self.labels.items() if v.ndim == 1]

    def take(self, rows) -> "Structures":
        """The structures at positions ``rows`` (in that order). A label on only some structures of the
        source becomes a label when every structure taken carries it (of one shape)."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        counts = self.n_atoms[rows]
        atoms = atoms_of(self.ptr, rows)
        r = rows.numpy()
        labels = {k: v[r] for k, v in self.labels.items()}
        atom_labels = {k: v[atoms.numpy()] for k, v in self.atom_labels.items()}
        partial = {k: v[r] for k, v in self.partial_labels.items()}
        partial_atoms = {k: v[r] for k, v in self.partial_atom_labels.items()}
        for k, col in list(partial.items()):
            value = _structure_label(list(col)) if len(col) else None
            if value is not None:
                labels[k] = value
                del partial[k]
        for k, col in list(partial_atoms.items()):
            if len(col) and all(v is not None for v in col) and len({v.shape[1:] for v in col}) == 1:
                atom_labels[k] = np.concatenate(list(col)).astype(np.float64)
                del partial_atoms[k]
        return Structures(self.numbers[atoms], self.pos[atoms], torch.cat([torch.zeros(1, dtype=torch.long),
                          counts.cumsum(0)]), self.cell[rows], self.pbc[rows], self.ids[r], labels, atom_labels,
                          dict(self.units), self.source, self.sha256, partial, partial_atoms)

    def describe_labels(self) -> str:
        """The labels in words, with how many structures carry those that not all do, e.g. ``energy,
        forces (per atom) on all 18 structures; dipole on 9 of 18``; ``none`` when there are none."""
        n = len(self)
        full = list(self.labels) + [f"{k} (per atom)" for k in self.atom_labels]
        groups: dict[str, list[str]] = {}
        for k, col, name in [*((k, c, k) for k, c in self.partial_labels.items()),
                             *((k, c, f"{k} (per atom)") for k, c in self.partial_atom_labels.items())]:
            have = sum(v is not None for v in col)
            where = f"on all {n} but of differing shapes" if have == n else f"on {have} of {n}"
            groups.setdefault(where, []).append(name)
        if not groups:
            return ", ".join(full) or "none"
        head = f"{', '.join(full) or 'none'} on all {n} structures"
        return "; ".join([head] + [f"{', '.join(names)} {where}" for where, names in groups.items()])

    def require_label(self, name: str, flag: str = "--target") -> None:
        """One line saying why ``name`` cannot be used as a per-structure label (missing, on only some
        structures, per atom), or nothing when it can."""
        if name in self.labels:
            return
        source = self.source or "the data"
        if name in self.partial_labels:
            have = sum(v is not None for v in self.partial_labels[name])
            why = (f"has differing shapes across the {len(self)} structures" if have == len(self) else
                   f"is on only {have} of the {len(self)} structures")
            raise IrrepprobeError(f"{flag} {name!r}: that label of {source} {why}; every structure used must carry "
                                  "it (keep only the structures that do, or choose another label)")
        if name in self.atom_labels or name in self.partial_atom_labels:
            raise IrrepprobeError(f"{flag} {name!r} is a per-atom label of {source}; give a per-structure one "
                                  f"(labels: {self.describe_labels()})")
        raise IrrepprobeError(f"{flag}: {source} has no label {name!r}; its labels: {self.describe_labels()}")

    def atoms(self, i: int):
        """Structure ``i`` as an ``ase.Atoms`` with its labels in ``info`` and ``arrays``."""
        from ase import Atoms

        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        cell = self.cell[i].numpy()
        at = Atoms(numbers=self.numbers[a:b].numpy(), positions=self.pos[a:b].numpy(),
                   cell=cell if np.abs(cell).sum() > 0 else None, pbc=self.pbc[i].numpy())
        for k, v in self.labels.items():
            at.info[k] = v[i]
        for k, v in self.atom_labels.items():
            at.arrays[k] = v[a:b]
        for k, v in self.partial_labels.items():  # where this structure carries them
            if v[i] is not None:
                at.info[k] = v[i]
        for k, v in self.partial_atom_labels.items():
            if v[i] is not None:
                at.arrays[k] = v[i]
        return at

    def rotated(self, R: torch.Tensor) -> "Structures":
        """Every structure rotated by the 3x3 matrix ``R`` (positions and cells; labels untouched)."""
        R = R.to(torch.float64)
        out = self.take(np.arange(len(self)))
        out.pos = self.pos.to(torch.float64) @ R.T
        out.cell = self.cell @ R.T
        return out


def read_structures(path, index: str = ":") -> Structures:
    """Every frame of a file ASE reads. Labels: numeric ``atoms.info`` entries and calculator results
    (energy, forces, dipole, ...) per structure, numeric extra ``atoms.arrays`` per atom; a label
    missing from some frames is not a label but kept apart (``partial_labels``), so that messages can
    say where it is."""
    path = Path(path)
    if not path.exists():
        raise IrrepprobeError(f"data file not found: {path}")
    if path.is_dir():
        raise IrrepprobeError(f"{path} is a directory; give a structure file (e.g. an .xyz)")
    try:
        import ase.io

        frames = ase.io.read(str(path), index=index)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"ASE cannot read {path} as structures ({first})") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise IrrepprobeError(f"{path} holds no structures")
    return from_atoms(frames, source=str(path), digest=sha256(path))


def _numeric(v):
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.size and np.all(np.isfinite(a)) else None


def from_atoms(frames, source: str = "", digest: str | None = None) -> Structures:
    per_structure: list[dict] = []
    per_atom: list[dict] = []
    for at in frames:
        info = {k: _numeric(v) for k, v in at.info.items()}
        arr = {k: _numeric(v) for k, v in at.arrays.items() if k not in _ASE_ARRAYS}
        calc = getattr(at, "calc", None)
        for k, v in (dict(getattr(calc, "results", {}) or {}) if calc is not None else {}).items():
            a = _numeric(v)
            if a is not None and a.ndim >= 1 and a.shape[0] == len(at) and k not in _PER_STRUCTURE_RESULTS:
                arr.setdefault(k, a)  # forces, charges, ...: one row per atom
            elif a is not None:
                info.setdefault(k, a)  # energy, dipole, ...
        per_structure.append({k: v for k, v in info.items() if v is not None})
        per_atom.append({k: v for k, v in arr.items() if v is not None})

    def common(dicts, shape_of):
        keys = set(dicts[0])
        for d in dicts[1:]:
            keys &= set(d)
        return [k for k in dicts[0] if k in keys and len({shape_of(d[k]) for d in dicts}) == 1]

    def partial(dicts, full):
        """Per key not in ``full``: an [n] object array of each structure's value, None where it has none."""
        out = {}
        for k in dict.fromkeys(k for d in dicts for k in d):
            if k not in full:
                col = np.empty(len(dicts), dtype=object)
                col[:] = [d.get(k) for d in dicts]
                out[k] = col
        return out

    full = common(per_structure, lambda a: a.shape)
    labels = {k: _structure_label([d[k] for d in per_structure]) for k in full}
    labels = {k: v for k, v in labels.items() if v is not None}
    partial_labels = {k: col for k, col in partial(per_structure, full).items()
                      if _structure_label([v for v in col if v is not None][:1]) is not None}  # a usable kind
    full_atoms = common(per_atom, lambda a: a.shape[1:])
    atom_labels = {k: np.concatenate([d[k] for d in per_atom]).astype(np.float64) for k in full_atoms}
    partial_atom_labels = partial(per_atom, full_atoms)
    counts = [len(at) for at in frames]
    return Structures(
        numbers=torch.as_tensor(np.concatenate([at.numbers for at in frames]), dtype=torch.long),
        pos=torch.as_tensor(np.concatenate([at.positions for at in frames]), dtype=torch.float64),
        ptr=torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.long),
        cell=torch.as_tensor(np.stack([np.asarray(at.cell[:], dtype=np.float64) for at in frames])),
        pbc=torch.as_tensor(np.stack([at.pbc for at in frames])),
        ids=np.arange(len(frames), dtype=np.int64), labels=labels, atom_labels=atom_labels,
        source=source, sha256=digest, partial_labels=partial_labels, partial_atom_labels=partial_atom_labels)


def _structure_label(values: list) -> np.ndarray | None:
    """Per-structure values of one label as an [n], [n, 3] or [n, 3, 3] float64 array (9 components read
    as a 3x3 tensor); None when some are missing, their shapes differ or the kind is not one of those."""
    if not values or any(v is None for v in values) or len({np.shape(v) for v in values}) != 1:
        return None
    v = np.stack(values).astype(np.float64)
    if v.shape[1:] == (9,):
        v = v.reshape(len(v), 3, 3)
    return v if v.ndim == 1 or v.shape[1:] in ((3,), (3, 3)) else None


def qm9_structures(qm9, indices=None, source: str = "qm9") -> Structures:
    """QM9 molecules (``indices`` into the cache, default all) with every target as a label in its
    unit: the scalar targets, ``dipole_vec`` as a Cartesian vector and ``polarizability`` as a 3x3
    tensor; Mulliken ``charges`` per atom."""
    from .targets import E_ANGSTROM_DEBYE, TARGETS, target_values

    idx = torch.arange(len(qm9)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    counts = qm9.n_atoms[idx]
    atoms = atoms_of(qm9.ptr, idx)
    labels, units = {}, {}
    for t in TARGETS.values():
        if t.irreps == "1x0e":
            labels[t.name] = target_values(qm9, t.name)[idx, 0].numpy()
            units[t.name] = t.unit
    mol = qm9.molecule_of_atom()
    d = torch.zeros(len(qm9), 3, dtype=torch.float64).index_add_(0, mol, (qm9.charges[:, None] * qm9.pos).double())
    labels["dipole_vec"] = (d[idx] * E_ANGSTROM_DEBYE).numpy()
    units["dipole_vec"] = "D"
    labels["polarizability"] = qm9.polarizability[idx].numpy()
    units["polarizability"] = "a0^3"
    n = len(idx)
    return Structures(
        numbers=torch.as_tensor(_QM9_Z)[qm9.species[atoms]], pos=qm9.pos[atoms].double(),
        ptr=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
        cell=torch.zeros(n, 3, 3, dtype=torch.float64), pbc=torch.zeros(n, 3, dtype=torch.bool),
        ids=idx.numpy().astype(np.int64), labels=labels,
        atom_labels={"charges": qm9.charges[atoms].double().numpy()}, units=units, source=source)


def write_extxyz(structures: Structures, path) -> Path:
    """All structures with their labels to an extended-XYZ file, written atomically."""
    import ase.io

    from ..fileio import atomic_write

    frames = [structures.atoms(i) for i in range(len(structures))]
    for at in frames:
        for k, v in list(at.info.items()):
            at.info[k] = v.reshape(-1) if np.ndim(v) > 1 else v  # extxyz stores flat arrays
    return atomic_write(path, lambda tmp: ase.io.write(tmp, frames, format="extxyz"))
