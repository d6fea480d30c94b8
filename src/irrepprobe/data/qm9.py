"""QM9 from the ``qm9pack`` wheel: parsed once, cached as tensors, loaded in about a second.

``qm9pack`` is not imported (its ``__init__`` needs ``pkg_resources``); its CSV files are located
through the import system instead.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import IrrepprobeError
from ..fileio import save_torch

ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
CACHE_VERSION = 1

# CSV column -> key in the cache; values stay in the CSV's own units (Hartree, Debye, bohr).
PROPERTY_COLUMNS = {
    "Dipole_debye": "mu",
    "Polarizability_bohr3": "alpha",
    "HOMO_au": "homo",
    "LUMO_au": "lumo",
    "HOMO_LUMO_gap_au": "gap",
    "R2_bohr2": "r2",
    "ZPVE_au": "zpve",
    "InternalEnergy_0K_au": "u0",
    "InternalEnergy_298K_au": "u",
    "Enthalphy_298K_au": "h",
    "GibbsFreeEnergy_298K_au": "g",
    "Heatcapacity_Cv_cal_mol_K": "cv",
}


@dataclass
class QM9:
    """All molecules as flat tensors; molecule ``i`` owns atoms ``ptr[i]:ptr[i+1]``."""

    species: torch.Tensor  # [atoms] int64 index into ELEMENTS
    pos: torch.Tensor  # [atoms, 3] float32, Angstrom
    charges: torch.Tensor  # [atoms] float32, Mulliken charges in e
    ptr: torch.Tensor  # [molecules + 1] int64
    index: torch.Tensor  # [molecules] int64, the QM9 index (gdb id)
    props: dict[str, torch.Tensor]  # name -> [molecules] float64, CSV units
    polarizability: torch.Tensor  # [molecules, 3, 3] float64, bohr^3

    def __len__(self) -> int:
        return self.ptr.numel() - 1

    @property
    def n_atoms(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def molecule_of_atom(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self)), self.n_atoms)


def qm9pack_dir() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise IrrepprobeError("the QM9 data package is missing: pip install qm9pack")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (data / "qm9_part1.csv").exists():
        raise IrrepprobeError(f"qm9pack is installed but its data files are not in {data}")
    return data


def default_cache_dir() -> Path:
    env = os.environ.get("IRREPPROBE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "irrepprobe"


def _cache_file(cache_dir: Path) -> Path:
    try:
        version = importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return cache_dir / f"qm9pack-{version}-v{CACHE_VERSION}.pt"


def _numbers(strings, dtype=np.float64) -> np.ndarray:
    """Parse bracketed lists such as '[[1.,2],[3,4.]]' (not JSON: '1.' is allowed)."""
    flat = ",".join(strings).replace("[", "").replace("]", "")
    return np.array(flat.split(","), dtype=dtype)


def _parse(data_dir: Path) -> dict[str, torch.Tensor]:
    import pandas as pd

    usecols = ["XYZ_file", "Index", "N_atoms", "Elements", "XYZ_Ang", "Mulliken_pop", *PROPERTY_COLUMNS]
    parts = [pd.read_csv(data_dir / f"qm9_part{i}.csv", usecols=usecols) for i in (1, 2, 3)]
    df = pd.concat(parts, ignore_index=True).sort_values("Index", kind="stable").reset_index(drop=True)
    pol = pd.read_csv(data_dir / "qm9_polarizability.csv").set_index("XYZ_file").loc[df["XYZ_file"]]

    n_atoms = df["N_atoms"].to_numpy(np.int64)
    total = int(n_atoms.sum())
    pos = _numbers(df["XYZ_Ang"]).reshape(-1, 3)
    charges = _numbers(df["Mulliken_pop"])
    symbols = ",".join(df["Elements"]).replace("[", "").replace("]", "").replace("'", "").split(",")
    lookup = {s: i for i, s in enumerate(ELEMENTS)}
    species = np.array([lookup[s.strip()] for s in symbols], dtype=np.int64)
    if not (len(pos) == len(charges) == len(species) == total):
        raise IrrepprobeError("qm9pack data is inconsistent: atom counts do not match coordinates")

    a = pol[["A_xx", "A_xy", "A_xz", "A_xy", "A_yy", "A_yz", "A_xz", "A_yz", "A_zz"]].to_numpy(np.float64)
    return {
        "species": torch.from_numpy(species),
        "pos": torch.from_numpy(pos.astype(np.float32)),
        "charges": torch.from_numpy(charges.astype(np.float32)),
        "ptr": torch.from_numpy(np.concatenate([[0], np.cumsum(n_atoms)])),
        "index": torch.from_numpy(df["Index"].to_numpy(np.int64).copy()),
        "polarizability": torch.from_numpy(a.reshape(-1, 3, 3).copy()),
        **{f"prop.{k}": torch.from_numpy(df[c].to_numpy(np.float64).copy()) for c, k in PROPERTY_COLUMNS.items()},
    }


def load_qm9(cache_dir: str | os.PathLike | None = None, rebuild: bool = False) -> QM9:
    """Load QM9, building the tensor cache on first use (``IRREPPROBE_CACHE`` or ``cache_dir``)."""
    path = _cache_file(Path(cache_dir) if cache_dir else default_cache_dir())
    tensors = None
    if path.exists() and not rebuild:
        try:
            tensors = torch.load(path, weights_only=True)
        except Exception:  # a damaged cache is rebuilt rather than trusted
            tensors = None
    if tensors is None:
        print(f"irrepprobe: parsing QM9 from qm9pack into {path} (once, about 10 s)", file=sys.stderr)
        tensors = _parse(qm9pack_dir())
        save_torch(tensors, path)
    props = {k[5:]: v for k, v in tensors.items() if k.startswith("prop.")}
    return QM9(
        species=tensors["species"],
        pos=tensors["pos"],
        charges=tensors["charges"],
        ptr=tensors["ptr"],
        index=tensors["index"],
        props=props,
        polarizability=tensors["polarizability"],
    )
