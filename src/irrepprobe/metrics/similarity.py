"""Linear CKA (Kornblith et al. 2019) between layers' per-molecule pooled invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..capture import Capture
from ..errors import IrrepprobeError
from .features import point_invariants


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) for column-centred X [n, p], Y [n, q]: 1 for
    representations equal up to rotation and isotropic scaling, near 0 for unrelated ones."""
    if len(X) != len(Y):
        raise IrrepprobeError(f"CKA needs the same samples in both: {len(X)} vs {len(Y)}")
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    xx, yy = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    if xx == 0 or yy == 0:
        return float("nan")
    return float(np.linalg.norm(Y.T @ X) ** 2 / (xx * yy))


def _features(cap: Capture, point: str) -> np.ndarray:
    # z-scored so that summed and mean invariants (very different scales) weigh alike
    X = point_invariants(cap, point)
    sd = X.std(0)
    return (X - X.mean(0)) / np.where(sd > 0, sd, 1)


def cka_matrix(cap: Capture, other: Capture | None = None, points=None, other_points=None) -> pd.DataFrame:
    """CKA between every pair of points of one capture, or (``other``) between the points of two
    captures over their common molecules; rows are ``cap``'s points, columns ``other``'s."""
    other = other or cap
    points, other_points = points or cap.points, other_points or other.points
    a, b = cap.arrays["index"], other.arrays["index"]
    common, ia, ib = np.intersect1d(a, b, return_indices=True)
    if len(common) < 3:
        raise IrrepprobeError("the two captures share fewer than 3 molecules: capture them over the same split")
    fa = {p: _features(cap, p)[ia] for p in points}
    fb = fa if other is cap else {p: _features(other, p)[ib] for p in other_points}
    return pd.DataFrame([[linear_cka(fa[p], fb[q]) for q in other_points] for p in points],
                        index=pd.Index(points, name="point"), columns=other_points)
