"""Is there a denominator? Checks that a relative or scale-free utilisation means something on this data.

A scale-free score divides by what the model learned beyond a baseline (``error``) or by the spread of
its own prediction (``shift``). Some data leave nothing to divide by: every structure of one
stoichiometry (the composition fit is a constant per atom, and the spread of the energy per atom is only
that of near-identical cells), a model no better than the baseline (the denominator is negative and
the score's sign flips), forces that are all but zero. Such numbers are left out, with the reason,
never printed as findings; the raw shifts (``mae``) stay.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..capture import Capture

# the spread of the energy per atom over the data below this share of its size is within a thousand float32
# roundings of it: near-identical structures, not chemistry. (A fixed share such as 1e-3 would flag any model
# whose per-atom energies carry a large constant offset, e.g. SO3LR's -163.6 eV for every element: 40 QM9
# molecules spread 0.069 eV per atom, 4e-4 of 165 eV, far above rounding.)
SPREAD_FLOOR = 1000 * float(np.finfo(np.float32).eps)
LEFT_OUT = ["scale_free", "scale_free_low", "scale_free_high"]


def _fractions(cap: Capture, n: int) -> np.ndarray:
    comp = np.asarray(cap.arrays["composition"][:n], dtype=float)
    return comp / comp.sum(1, keepdims=True).clip(min=1)


def denominator_checks(cap: Capture, table: pd.DataFrame) -> pd.DataFrame:
    """One row per check that fails: ``check``, ``quantity`` (None: the data), ``value``, ``leave_out``
    (whether the quantity's scale-free numbers are left out) and a one-line ``message``."""
    n = int(table["molecules"].max()) if "molecules" in table and len(table) else len(cap.arrays["index"])
    out = []
    one = len(np.unique(np.round(_fractions(cap, n), 9), axis=0)) == 1
    if one:
        out.append({"check": "one stoichiometry", "quantity": None, "value": 1.0, "leave_out": False,
                    "message": "every structure has the same element proportions: the composition fit is a "
                               "constant per atom, so 'beyond composition' means beyond that constant"})
    if "scale" not in table or "quantity" not in table:  # a table from before these checks: nothing to check
        return pd.DataFrame(out, columns=["check", "quantity", "value", "leave_out", "message"])
    for q, rows in table.groupby("quantity", sort=False):
        rows = rows[rows["structures"] == rows["structures"].max()] if "structures" in rows else rows
        kind, scale = rows["score"].iloc[0], float(rows["scale"].iloc[0])
        base = float(rows["base_mae"].iloc[0])
        if kind == "error" and not scale > 0:
            what = "zero forces" if q == "forces" else "a least-squares fit on element counts"
            out.append({"check": "no better than the baseline", "quantity": q, "value": scale, "leave_out": True,
                        "message": f"the model's {q} MAE ({base:.4g}) is no better than {what} (by {-scale:.4g}): "
                                   "nothing learned beyond it to take a share of, so no scale-free number and no "
                                   f"verdict rests on {q}"})
        elif kind == "shift" and q != "forces":
            per_atom = cap.meta["quantity"].get("per_atom", False)
            pred = np.asarray(cap.outputs[:n], dtype=float)
            size = float(np.abs(pred / (cap.arrays["n_atoms"][:n, None] if per_atom else 1)).mean())
            if one or not scale > SPREAD_FLOOR * size:
                why = ("one stoichiometry: the spread of the prediction is that of near-identical structures"
                       if one else f"the prediction's spread ({scale:.3g}) is below {SPREAD_FLOOR:.2g} of its size "
                                   f"({size:.3g}), within float rounding of it")
                out.append({"check": "prediction spread degenerate", "quantity": q, "value": scale, "leave_out": True,
                            "message": f"{why}, so shifts of the {q} relative to it are not reported (the raw "
                                       "shifts are, in the column mae); no verdict rests on it"})
        elif kind == "shift" and not scale > 1e-8:
            out.append({"check": "forces near zero", "quantity": q, "value": scale, "leave_out": True,
                        "message": "the model's forces are all but zero on this data: no scale for their shifts"})
    return pd.DataFrame(out, columns=["check", "quantity", "value", "leave_out", "message"])


def apply_checks(table: pd.DataFrame, checks: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the scale-free numbers (and for ``shift`` scores the relative ones, the same
    division) of every quantity a check leaves out set to NaN."""
    table = table.copy()
    for q in checks.loc[checks["leave_out"], "quantity"].dropna().unique():
        rows = table["quantity"] == q
        table.loc[rows, LEFT_OUT] = np.nan
        shift = [c for c in ("utilisation", "utilisation_low", "utilisation_high") if c in table]
        table.loc[rows & (table["score"] == "shift"), shift] = np.nan
    return table
