"""Per layer and block: how large the block is and how many directions it spreads over."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..capture import Capture
from .features import block_info


def participation_ratio(x: np.ndarray) -> float:
    """Effective rank of the covariance of ``x`` [samples, features]: (sum lambda)^2 / sum lambda^2,
    between 1 (one direction) and the number of features (all equal)."""
    if x.shape[0] < 2 or x.shape[1] == 0:
        return float("nan")
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])), 0, None)
    return float(lam.sum() ** 2 / (lam**2).sum()) if lam.sum() > 0 else 0.0


def norms(cap: Capture) -> pd.DataFrame:
    """One row per (point, block): multiplicity, mean norm, norm share, dead-channel fraction and the
    effective rank of the per-molecule mean invariants (the channel values for l = 0, norms for l > 0)."""
    df = cap.summary.copy()
    ranks = []
    for point, block in zip(df["point"], df["block"]):
        kind = "value_mean" if block_info(cap, point, block)["l"] == 0 else "norm_mean"
        ranks.append(participation_ratio(cap.pooled(point, block, kind)))
    df["effective_rank"] = ranks
    df["effective_rank_fraction"] = df["effective_rank"] / df["mul"]
    return df
