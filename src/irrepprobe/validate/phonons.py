"""Phonons by finite displacements (``ase.phonons``) of primitive Si and Cu: frequencies along a band
path, imaginary modes flagged, models compared with each other (there is no DFT table of them offline)."""
from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd

MEV_THZ = 0.241798924  # 1 meV in THz
CRYSTALS = {"Si": ("diamond", 5.43, "GXWKGL"), "Cu": ("fcc", 3.61, "GXWKGL")}


def run(calc, label: str, symbol: str, supercell: int = 3, npoints: int = 60) -> pd.DataFrame:
    """Frequencies (THz) of every branch at ``npoints`` q-points along the fcc path; negative values are
    imaginary modes."""
    from ase.build import bulk
    from ase.phonons import Phonons

    kind, a0, path = CRYSTALS[symbol]
    atoms = bulk(symbol, kind, a=a0)
    with tempfile.TemporaryDirectory() as tmp:
        ph = Phonons(atoms, calc, supercell=(supercell,) * 3, delta=0.01, name=f"{tmp}/phonon")
        ph.run()
        ph.read(acoustic=True)
        bp = atoms.cell.bandpath(path, npoints=npoints)
        omega = ph.band_structure(bp.kpts) * 1000 * MEV_THZ  # eV -> THz
        ph.clean()
    x, xs, names = bp.get_linear_kpoint_axis()
    rows = []
    for k in range(len(bp.kpts)):
        for br, w in enumerate(np.sort(omega[k])):
            rows.append({"model": label, "crystal": symbol, "q": k, "path position": float(x[k]), "branch": br,
                         "frequency (THz)": float(w)})
    return pd.DataFrame(rows).assign(labels=",".join(names), ticks=",".join(f"{v:.6f}" for v in xs))


def compare(table: pd.DataFrame) -> pd.DataFrame:
    """Per crystal and model: the highest frequency, the most negative (an imaginary mode below -0.1 THz is
    flagged) and the RMS difference of all frequencies from the first model's."""
    rows = []
    for crystal, g in table.groupby("crystal", sort=False):
        models = list(dict.fromkeys(g["model"]))
        first = g[g["model"] == models[0]]["frequency (THz)"].to_numpy()
        for m in models:
            w = g[g["model"] == m]["frequency (THz)"].to_numpy()
            rows.append({"crystal": crystal, "model": m, "highest (THz)": float(w.max()),
                         "lowest (THz)": float(w.min()), "imaginary modes": bool(w.min() < -0.1),
                         f"RMS difference from {models[0]} (THz)": float(np.sqrt(np.mean((w - first) ** 2)))
                         if len(w) == len(first) else np.nan})
    return pd.DataFrame(rows)
