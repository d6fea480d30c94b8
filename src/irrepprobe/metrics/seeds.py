"""Across seeds: how far one configuration's utilisation moves between training runs.

A report's intervals resample structures within one trained model. Training runs of one configuration
differ far more (in the Lee study an order's utilisation across seeds spread a median 8x the bootstrap
standard error of one model), so given several seeds the report sets their spread beside the
within-model interval: per row, the seeds' values, their mean with a Student t interval over seeds (its
coverage is checked by simulation in tests/test_seeds.py), their standard deviation, and that standard
deviation over the within-model standard error (``spread_ratio``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import IrrepprobeError

KEYS = ["point", "block", "intervention", "quantity"]
Z95 = stats.norm.ppf(0.975)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` (one per seed) with a Student t interval; NaN bounds for fewer than two."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (np.nan,) * 3
    mean = float(v.mean())
    if len(v) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return mean, mean - half, mean + half


def across_seeds(tables: list[pd.DataFrame], names: list[str] | None = None, value: str = "scale_free") -> pd.DataFrame:
    """Per row key (point, block, intervention, quantity) of the first table (this model): ``value`` in
    each seed's table, their mean, t interval and standard deviation, this model's within-model standard
    error (its 95% bootstrap interval's width over 2 x 1.96) and the ratio of the two."""
    if len(tables) < 2:
        raise IrrepprobeError("the spread across seeds needs at least two models of the configuration")
    names = names or [f"seed {k}" for k in range(len(tables))]
    keys = [k for k in KEYS if all(k in t for t in tables)]
    first = tables[0].drop_duplicates(keys).set_index(keys)
    for name, t in zip(names[1:], tables[1:]):
        missing = set(first.index) - set(t.drop_duplicates(keys).set_index(keys).index)
        if missing:
            raise IrrepprobeError(f"{name} is not the same architecture: it has no {' '.join(map(str, sorted(missing)[0]))}")
    per = pd.concat([t.drop_duplicates(keys).set_index(keys)[value].rename(n) for n, t in zip(names, tables)], axis=1)
    per = per.loc[first.index]
    out = per.copy()
    ivs = [t_interval(row) for row in per.to_numpy()]
    out["seeds"] = np.isfinite(per.to_numpy()).sum(1)
    out["mean"], out["mean_low"], out["mean_high"] = zip(*ivs) if ivs else ([], [], [])
    out["sd"] = per.std(axis=1, ddof=1)
    se = (first[f"{value}_high"] - first[f"{value}_low"]) / (2 * Z95)
    out["within_se"] = se
    out["spread_ratio"] = out["sd"] / se.where(se > 0)
    return out.reset_index()
