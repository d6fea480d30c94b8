"""Lee et al.'s own criterion, measured: does a block's 2-D map look structured?

Lee et al. judged irreps by eye on PHATE maps of pooled per-irrep features: a map coloured by the target
that shows smooth gradients reads "used", a speckled one "unused". Here each map gets a number and the
nulls a reader needs before trusting it: the map of a block's pooled features (its raw components, which
depend on the structures' orientation, as in the paper; and its rotation invariants) is scored by the
out-of-fold R2 of a k-nearest-neighbour regression of the target (beyond composition) from the two map
coordinates, against

* the same map scored on permuted targets (its 95th percentile: what no relation scores),
* the same block's map in each untrained initialisation (what the architecture gives before training),
* the map of the element counts alone (what composition gives).

``structured``: the score beats all three. Whether "looks structured" agrees with "the checkpoint depends
on it" and "the architecture needs it" is then a cross-table, not an assumption.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsRegressor

from ..capture import Capture
from .features import block_info, composition, invariants
from .latent import latent_map, subsample
from .probes import cv_r2

KINDS = ("components", "invariants")


def components(cap: Capture, point: str, block: str) -> np.ndarray:
    """[structures, features] a block's pooled raw components: summed values for l = 0, the summed vectors'
    components for l > 0 (orientation-dependent: QM9 holds molecules in a standard orientation)."""
    if block_info(cap, point, block)["l"] == 0:
        return cap.pooled(point, block, "value_sum").astype(np.float64)
    v = cap.pooled(point, block, "vector_sum")
    return v.reshape(len(v), -1).astype(np.float64)


def map_score(Z: np.ndarray, y: np.ndarray, k: int = 10, folds: int = 5, seed: int = 0) -> float:
    """Out-of-fold R2 of a kNN regression of ``y`` from 2-D map coordinates ``Z``."""
    return float(cv_r2(KNeighborsRegressor(min(k, len(y) - len(y) // folds - 1)), Z, y[:, None], folds, seed)[0])


def map_scores(cap: Capture, y: np.ndarray, controls: list[Capture] = (), points=None, method: str = "umap",
               n: int | None = 1000, permutations: int = 20, seed: int = 0) -> pd.DataFrame:
    """Per point, block and feature kind: the map's score, its nulls and whether it beats them all.
    ``y``: per structure, the target beyond composition; ``controls``: untrained captures over the same
    structures; ``n``: structures mapped (a random subsample)."""
    idx = subsample(len(y), n, seed)
    yy = np.asarray(y, dtype=np.float64)[idx]
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(len(yy)) for _ in range(permutations)]
    comp = map_score(latent_map(composition(cap)[idx], method, seed), yy, seed=seed)
    rows = []
    for p in points or cap.points:
        for b in cap.blocks(p):
            info = block_info(cap, p, b)
            for kind in KINDS:
                feats = components if kind == "components" else invariants
                Z = latent_map(feats(cap, p, b)[idx], method, seed)
                score = map_score(Z, yy, seed=seed)
                null = np.array([map_score(Z, yy[q], seed=seed) for q in perms])
                untrained = [map_score(latent_map(feats(c, p, b)[idx], method, seed), yy, seed=seed) for c in controls]
                best_untrained = max(untrained) if untrained else np.nan
                rows.append({"point": p, "block": b, "l": info["l"], "features": kind, "map_r2": score,
                             "permuted_95": float(np.quantile(null, 0.95)), "untrained_max": best_untrained,
                             "composition": comp,
                             "structured": bool(score > np.quantile(null, 0.95) and score > comp
                                                and (not untrained or score > best_untrained))})
    return pd.DataFrame(rows)


def cross_table(maps: pd.DataFrame, verdict: pd.DataFrame, orders: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per block: does its map look structured (each feature kind), beside the checkpoint's dependence on
    it (and, per order, recovery and necessity where measured): where do the criteria agree?"""
    wide = maps.pivot_table(index=["point", "block", "l"], columns="features", values="structured",
                            aggfunc="first").reset_index()
    wide = wide.rename(columns={k: f"map looks structured ({k})" for k in KINDS})
    v = verdict[["point", "block", "verdict", "dependence"]] if "dependence" in verdict else verdict[["point", "block", "verdict"]]
    out = wide.merge(v, on=["point", "block"], how="left")
    if orders is not None and len(orders):
        by = {o: r for o, r in zip(orders["order"], orders.to_dict("records"))}
        for leg in ("recovery", "necessity"):
            if leg in orders:
                out[f"{leg} (order)"] = [by.get(f"l={l}", {}).get(leg, "").rsplit(": ", 1)[-1] if l > 0 else ""
                                         for l in out["l"]]
    return out
