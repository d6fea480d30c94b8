"""Latent structure: do molecules that are close in a block's pooled-feature space share target
values (and errors)? Scored by k-nearest-neighbour regression; drawn as 2-D maps."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..capture import Capture
from ..errors import IrrepprobeError
from .features import block_info, invariants
from .probes import cv_r2

MAP_METHODS = ("umap", "phate", "pca")


def knn_scores(cap: Capture, targets: pd.DataFrame, points=None, k: int = 10, folds: int = 5,
               seed: int = 0) -> pd.DataFrame:
    """Out-of-fold R2 of a k-nearest-neighbour regressor (standardised invariants, Euclidean) for each
    column of ``targets`` (e.g. :func:`invariant_targets`: the target and the squared error)."""
    Y = targets.to_numpy(np.float64)
    rows = []
    for p in points or cap.points:
        for b in cap.blocks(p):
            model = make_pipeline(StandardScaler(), KNeighborsRegressor(min(k, len(Y) - len(Y) // folds - 1)))
            scores = cv_r2(model, invariants(cap, p, b), Y, folds, seed)
            info = block_info(cap, p, b)
            rows += [{"point": p, "block": b, "l": info["l"], "parity": "e" if info["parity"] == 1 else "o",
                      "target": name, "knn_r2": s, "k": k} for name, s in zip(targets.columns, scores)]
    return pd.DataFrame(rows)


def subsample(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def latent_map(X: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """[n, 2] embedding of standardised ``X``: UMAP (umap-learn), PHATE (if installed) or PCA."""
    if method not in MAP_METHODS:
        raise IrrepprobeError(f"unknown map method {method!r}; valid: {', '.join(MAP_METHODS)}")
    Xs = StandardScaler().fit_transform(X)
    if method == "pca" or Xs.shape[1] < 3:
        from sklearn.decomposition import PCA

        emb = PCA(2, random_state=seed).fit_transform(Xs) if Xs.shape[1] >= 2 else np.c_[Xs, np.zeros(len(Xs))]
        return emb
    if method == "phate":
        try:
            import phate
        except ImportError:
            raise IrrepprobeError("--map-method phate needs the phate package: pip install phate") from None
        return phate.PHATE(n_components=2, random_state=seed, verbose=0).fit_transform(Xs)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a fixed random_state disables parallelism
        import umap

        return umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(Xs)
