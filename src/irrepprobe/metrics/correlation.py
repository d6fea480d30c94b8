"""Rank correlation across runs with a bootstrap confidence interval, and a plain verdict on whether
there are enough runs for it to mean anything."""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

MIN_RUNS = 10  # below this a rank correlation over runs is anecdote, whatever its interval


def spearman_ci(x, y, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Spearman rho of ``x`` and ``y`` with a percentile bootstrap interval (runs resampled with
    replacement; resamples with a constant side are skipped)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    out = {"n": n, "rho": np.nan, "p": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = spearmanr(x, y)
    out["rho"], out["p"] = float(res.statistic), float(res.pvalue)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(spearmanr(x[i], y[i]).statistic)
    if boots:
        a = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boots, [a, 1 - a]))
    return out


def verdict(row: dict) -> str:
    """One sentence a reader can act on."""
    n, rho, lo, hi = row["n"], row["rho"], row["ci_low"], row["ci_high"]
    if not np.isfinite(rho):
        return f"{n} runs: no correlation can be computed."
    text = f"Spearman rho = {rho:+.2f} over {n} runs (95% bootstrap interval {lo:+.2f} to {hi:+.2f})"
    if n < MIN_RUNS:
        return text + f": too few runs (fewer than {MIN_RUNS}) for this to mean much."
    if lo <= 0 <= hi:
        return text + ": the interval includes 0, so no correlation is shown."
    return text + "."
