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
               seed: int = 0, repeats: int = 5, fraction: float = 0.8) -> pd.DataFrame:
    """Out-of-fold R2 of a k-nearest-neighbour regressor (standardised invariants, Euclidean) for each
    column of ``targets`` (e.g. :func:`invariant_targets`: the target and the squared error), on
    ``repeats`` random subsamples of ``fraction`` of the structures (column ``repeat``), so that the
    score comes with its own sampling spread (:func:`knn_summary`). ``repeats=1, fraction=1``: one
    score on all structures."""
    Y = targets.to_numpy(np.float64)
    subsets = [np.arange(len(Y))] if repeats == 1 and fraction >= 1 else \
        [subsample(len(Y), int(round(fraction * len(Y))), seed + r) for r in range(repeats)]
    rows = []
    for p in points or cap.points:
        role = cap.meta["points"][p].get("role", "")
        for b in cap.blocks(p):
            X = invariants(cap, p, b)
            info = block_info(cap, p, b)
            for r, idx in enumerate(subsets):
                n_train = len(idx) - len(idx) // folds
                model = make_pipeline(StandardScaler(), KNeighborsRegressor(min(k, n_train - 1)))
                scores = cv_r2(model, X[idx], Y[idx], folds, seed + r)
                rows += [{"point": p, "role": role, "block": b, "l": info["l"],
                          "parity": "e" if info["parity"] == 1 else "o", "target": name, "repeat": r,
                          "knn_r2": s, "k": k} for name, s in zip(targets.columns, scores)]
    return pd.DataFrame(rows)


def knn_summary(knn: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, block, target): the mean kNN R2 over the repeats and its standard deviation."""
    keys = [c for c in ("point", "role", "block", "l", "parity", "target") if c in knn]
    return (knn.groupby(keys, sort=False)["knn_r2"].agg(knn_r2="mean", knn_r2_sd="std", repeats="size")
            .reset_index())


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
