"""Analytic stress against finite differences of the energy under strain: sigma_ij = (1/V) dE/d eps_ij,
central differences at +-``h`` of each of the six Voigt strains, on rattled, strained crystals."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .eos import EV_A3_GPA

VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def cells(elements: set[int] | None = None) -> dict:
    """Small rattled, sheared crystals for the check (those made of ``elements``; None: all)."""
    from ase.build import bulk

    made = {"Si diamond, 8 atoms": bulk("Si", "diamond", a=5.43, cubic=True),
            "Cu fcc, 4 atoms": bulk("Cu", "fcc", a=3.61, cubic=True),
            "NaCl rock salt, 8 atoms": bulk("NaCl", "rocksalt", a=5.64, cubic=True),
            "MgO rock salt, 8 atoms": bulk("MgO", "rocksalt", a=4.21, cubic=True)}
    out = {}
    for k, (name, a) in enumerate(made.items()):
        if elements is not None and not set(a.numbers) <= elements:
            continue
        a.rattle(0.03, seed=k)
        a.set_cell(a.cell @ (np.eye(3) + np.array([[0.01, 0.005, 0], [0.005, -0.01, 0.004], [0, 0.004, 0.02]])),
                   scale_atoms=True)
        out[name] = a
    return out


def strained(atoms, i: int, j: int, eps: float):
    a = atoms.copy()
    e = np.eye(3)
    e[i, j] += eps / (2 if i != j else 1)
    if i != j:
        e[j, i] += eps / 2
    a.set_cell(a.cell @ e, scale_atoms=True)
    return a


def run(calc, label: str, systems: dict, h: float = 1e-3) -> pd.DataFrame:
    """Per system and Voigt component: analytic and finite-difference stress (GPa) and their difference;
    rows say "not computed" when the calculator has no stress."""
    from .calculators import fresh

    rows = []
    has = "stress" in getattr(calc, "implemented_properties", [])
    for name, atoms in systems.items():
        if not has:
            rows.append({"model": label, "system": name, "component": "", "analytic (GPa)": np.nan,
                         "finite difference (GPa)": np.nan, "difference (GPa)": np.nan, "note": "not computed: the "
                         "calculator gives no stress"})
            continue
        analytic = fresh(atoms, calc).get_stress(voigt=True) * EV_A3_GPA  # ASE: xx yy zz yz xz xy
        v = atoms.get_volume()
        for k, (i, j) in enumerate(VOIGT):
            ep = fresh(strained(atoms, i, j, h), calc).get_potential_energy()
            em = fresh(strained(atoms, i, j, -h), calc).get_potential_energy()
            fd = (ep - em) / (2 * h) / v * EV_A3_GPA
            rows.append({"model": label, "system": name, "component": "xx yy zz yz xz xy".split()[k],
                         "analytic (GPa)": float(analytic[k]), "finite difference (GPa)": float(fd),
                         "difference (GPa)": float(analytic[k] - fd), "note": ""})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model: the largest absolute difference (GPa) and the largest relative to the stress's scale."""
    rows = []
    for m, g in table.groupby("model", sort=False):
        if g["analytic (GPa)"].isna().all():
            rows.append({"model": m, "max |analytic - finite difference| (GPa)": np.nan, "relative": np.nan,
                         "verdict": "not computed"})
            continue
        d = g["difference (GPa)"].abs().max()
        scale = max(g["finite difference (GPa)"].abs().max(), 1e-3)
        rows.append({"model": m, "max |analytic - finite difference| (GPa)": d, "relative": d / scale,
                     "verdict": "consistent" if d < max(0.05, 0.02 * scale) else "inconsistent"})
    return pd.DataFrame(rows)
