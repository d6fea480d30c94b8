"""What the metrics read from a capture: rotation-invariant per-molecule features of each block, the
targets of the captured molecules, and which points are hidden layers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from e3nn import o3

from ..capture import Capture
from ..data import TARGETS, get_target, load_qm9, target_values
from ..data.qm9 import ELEMENTS


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
    """Captured points other than the one that is the model's per-atom output (the readout), whose
    irreps are the target's: the layers whose blocks the verdict speaks about."""
    pts = cap.points
    target_irreps = o3.Irreps(get_target(cap.meta["target"]).irreps)
    if len(pts) > 1 and o3.Irreps(cap.meta["points"][pts[-1]]["irreps"]) == target_irreps:
        return pts[:-1]
    return pts


def scalar_targets() -> list[str]:
    return [t.name for t in TARGETS.values() if t.irreps == "1x0e"]


def _qm9(cap: Capture, qm9=None):
    return qm9 if qm9 is not None else load_qm9(cap.meta["config"]["data"].get("cache_dir"))


def composition(cap: Capture, qm9=None) -> np.ndarray:
    """[molecules, elements] element counts of the captured molecules."""
    qm9 = _qm9(cap, qm9)
    idx = torch.as_tensor(cap.arrays["index"])
    counts = torch.zeros(len(qm9), len(ELEMENTS), dtype=torch.float64)
    counts.index_put_((qm9.molecule_of_atom(), qm9.species), torch.ones(len(qm9.species), dtype=torch.float64),
                      accumulate=True)
    return counts[idx].numpy()


def beyond_composition(values: pd.DataFrame, counts: np.ndarray) -> pd.DataFrame:
    """Each column minus its least-squares fit on element counts and a constant: the part of a target
    that composition does not explain. Extensive targets (energies, alpha, cv) are >97 % composition,
    which any model, trained or not, encodes; probing the residual asks what a block adds to that."""
    A = np.c_[counts, np.ones(len(counts))]
    Y = values.to_numpy(np.float64)
    coef, *_ = np.linalg.lstsq(A, Y, rcond=None)
    return pd.DataFrame(Y - A @ coef, columns=values.columns, index=values.index)


def target_table(cap: Capture, names: list[str] | None = None, qm9=None, residual: bool = True) -> pd.DataFrame:
    """Scalar targets (default: all) of the captured molecules, in capture order; with ``residual``
    the part beyond composition (:func:`beyond_composition`)."""
    qm9 = _qm9(cap, qm9)
    idx = cap.arrays["index"]
    df = pd.DataFrame({n: target_values(qm9, n)[idx, 0].numpy() for n in (names or scalar_targets())})
    return beyond_composition(df, composition(cap, qm9)) if residual else df


def invariant_targets(cap: Capture, qm9=None, residual: bool = True) -> pd.DataFrame:
    """The model's own target as invariants (a scalar itself; the norm of each l > 0 part; with
    ``residual`` the part beyond composition) and the model's squared error per molecule."""
    name = cap.meta["target"]
    irreps = o3.Irreps(get_target(name).irreps)
    y, err = cap.targets, cap.errors
    cols = {}
    for s, (_, ir) in zip(irreps.slices(), irreps):
        if ir.l == 0:
            cols[name if irreps.dim == 1 else f"{name}[{ir}]"] = y[:, s][:, 0]
        else:
            cols[f"|{name}[{ir}]|"] = np.linalg.norm(y[:, s], axis=1)
    df = pd.DataFrame(cols)
    if residual:
        df = beyond_composition(df, composition(cap, qm9))
    df["squared error"] = (err**2).sum(axis=1)
    return df
