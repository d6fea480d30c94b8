"""What the metrics read from a capture: rotation-invariant per-molecule features of each block, the
targets of the captured molecules, and which points are hidden layers."""
from __future__ import annotations

import numpy as np
import pandas as pd
from e3nn import o3

from ..capture import Capture
from ..data import get_target
from ..errors import IrrepprobeError


def invariants(cap: Capture, point: str, block: str) -> np.ndarray:
    """[molecules, 3 * mul] invariants of a block, per channel: for l = 0 the summed and mean value and
    the summed norm; for l > 0 the summed and mean norm and the norm of the summed vector (which keeps
    the molecule-level direction information, e.g. a dipole's size)."""
    norm_sum = cap.pooled(point, block, "norm_sum")
    if _is_scalar(cap, point, block):
        parts = [cap.pooled(point, block, "value_sum"), cap.pooled(point, block, "value_mean"), norm_sum]
    else:
        vec = cap.pooled(point, block, "vector_sum")
        parts = [norm_sum, cap.pooled(point, block, "norm_mean"), np.linalg.norm(vec, axis=-1)]
    return np.concatenate(parts, axis=1).astype(np.float64)


def point_invariants(cap: Capture, point: str) -> np.ndarray:
    return np.concatenate([invariants(cap, point, b) for b in cap.blocks(point)], axis=1)


def _is_scalar(cap: Capture, point: str, block: str) -> bool:
    return block_info(cap, point, block)["l"] == 0


def block_info(cap: Capture, point: str, block: str) -> dict:
    return next(b for b in cap.meta["points"][point]["blocks"] if b["name"] == block)


def hidden_points(cap: Capture) -> list[str]:
    """Captured points other than the model's per-atom output (the readout): the layers whose blocks
    the verdict speaks about."""
    pts = cap.points
    hidden = [p for p in pts if cap.meta["points"][p].get("role") != "output"]
    return hidden or pts


def scalar_labels(cap: Capture) -> list[str]:
    """The captured structures' scalar labels (for QM9: every scalar target)."""
    return [k for k, v in cap.meta.get("labels", {}).items() if not v["shape"]]


def label(cap: Capture, name: str) -> np.ndarray:
    key = f"label/{name}"
    if key not in cap.arrays:
        raise IrrepprobeError(f"capture has no label {name!r}")
    return cap.arrays[key]


def composition(cap: Capture) -> np.ndarray:
    """[structures, elements] element counts of the captured structures (elements: ``meta['elements']``)."""
    return cap.arrays["composition"]


def residualise(X: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``X`` minus its least-squares fit on element counts and a constant."""
    A = np.c_[counts, np.ones(len(counts))]
    return X - A @ np.linalg.lstsq(A, X, rcond=None)[0]


def beyond_composition(values: pd.DataFrame, counts: np.ndarray) -> pd.DataFrame:
    """Each column minus its least-squares fit on element counts and a constant: the part of a target
    that composition does not explain. Extensive targets (energies, alpha, cv) are >97 % composition,
    which any model, trained or not, encodes; probing the residual asks what a block adds to that."""
    return pd.DataFrame(residualise(values.to_numpy(np.float64), counts), columns=values.columns, index=values.index)


def check_same_structures(cap: Capture, control: Capture) -> None:
    """Refuse a control capture over other structures than ``cap`` (controls are compared row by row)."""
    if not np.array_equal(cap.arrays["index"], control.arrays["index"]):
        raise IrrepprobeError("the control capture holds other molecules than the capture: capture both "
                              "over the same split and subset")


def target_table(cap: Capture, names: list[str] | None = None, residual: bool = True) -> pd.DataFrame:
    """Scalar labels (default: all) of the captured structures, in capture order; with ``residual``
    the part beyond composition (:func:`beyond_composition`)."""
    df = pd.DataFrame({n: label(cap, n) for n in (names if names is not None else scalar_labels(cap))})
    return beyond_composition(df, composition(cap)) if residual and len(df.columns) else df


def own_quantity(cap: Capture) -> tuple[str, np.ndarray, str]:
    """The model's own quantity per structure: its label when the capture has one (column name, values
    [n, k], unit), else the model's prediction (named "... (model)")."""
    q = cap.meta.get("quantity") or {"name": cap.meta["target"], "unit": get_target(cap.meta["target"]).unit}
    if "target" in cap.arrays:
        return cap.meta["target"], cap.targets, q["unit"]
    return f"{q['name']} (model)", cap.outputs, q["unit"]


def invariant_targets(cap: Capture, residual: bool = True) -> pd.DataFrame:
    """The model's own quantity as invariants (:func:`own_quantity`; a scalar itself, the norm of each
    l > 0 part; with ``residual`` the part beyond composition) and, where the capture has errors, the
    model's squared error per structure."""
    name, y, _ = own_quantity(cap)
    irreps = o3.Irreps(cap.meta.get("quantity", {}).get("irreps") or get_target(cap.meta["target"]).irreps)
    cols = {}
    for s, (_, ir) in zip(irreps.slices(), irreps):
        if ir.l == 0:
            cols[name if irreps.dim == 1 else f"{name}[{ir}]"] = y[:, s][:, 0]
        else:
            cols[f"|{name}[{ir}]|"] = np.linalg.norm(y[:, s], axis=1)
    df = pd.DataFrame(cols)
    if residual:
        df = beyond_composition(df, composition(cap))
    if "error" in cap.arrays:
        df["squared error"] = (cap.errors**2).sum(axis=1)
    return df
