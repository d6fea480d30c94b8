"""Latent structure against test error across runs: a rank correlation with a bootstrap interval over
configurations (seeds of one configuration are not independent evidence), within each target (a
correlation across targets compares units and difficulties, not latents), and a leave-one-configuration-
out test of whether latent structure predicts a configuration's error better than the mean does."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

MIN_RUNS = 10  # below this a rank correlation over runs is anecdote, whatever its interval


def spearman_ci(x, y, n_boot: int = 2000, level: float = 0.95, seed: int = 0, groups=None) -> dict:
    """Spearman rho of ``x`` and ``y`` with a percentile bootstrap interval: ``groups`` (e.g. each run's
    configuration) resampled with replacement, every member of a drawn group kept; without ``groups``
    the runs themselves. Resamples with a constant side are skipped."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    g = np.arange(len(x)) if groups is None else pd.factorize(np.asarray(groups))[0]
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, g = x[keep], y[keep], g[keep]
    n = len(x)
    out = {"n": n, "groups": len(np.unique(g)), "rho": np.nan, "p": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = spearmanr(x, y)
    out["rho"], out["p"] = float(res.statistic), float(res.pvalue)
    members = [np.flatnonzero(g == k) for k in np.unique(g)]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(spearmanr(x[i], y[i]).statistic)
    if boots:
        a = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(boots, [a, 1 - a]))
    return out


def within(values: pd.Series, by: pd.Series) -> pd.Series:
    """``values`` standardised within each group of ``by`` (mean 0, sd 1; a one-run group gives 0)."""
    grouped = values.groupby(by)
    sd = grouped.transform("std").replace(0, np.nan)
    return ((values - grouped.transform("mean")) / sd).fillna(0.0)


def latent_vs_error(runs: pd.DataFrame, latent: str, error: str = "test_mae", n_boot: int = 2000,
                    seed: int = 0) -> pd.DataFrame:
    """Rows of Spearman(latent, error) with bootstrap intervals over configurations:

    * ``within targets``: both sides standardised within each target, then pooled (the headline);
    * ``target T``: within one target, where the grid has several;
    * ``pooled across targets``: relative MAE, as earlier reports did; target differences alone can
      make it (a between-target artefact), so it is shown for comparison only."""
    rows = []
    z = runs.assign(_x=within(runs[latent], runs["target"]), _y=within(runs[error], runs["target"]))
    rows.append({"runs": "within targets", **spearman_ci(z["_x"], z["_y"], n_boot, seed=seed, groups=z["config"])})
    if runs["target"].nunique() > 1:
        for target, g in runs.groupby("target", sort=False):
            rows.append({"runs": f"target {target}", **spearman_ci(g[latent], g[error], n_boot, seed=seed,
                                                                   groups=g["config"])})
        rel = "test_mae_relative" if "test_mae_relative" in runs else error
        rows.append({"runs": "pooled across targets (artefact-prone)",
                     **spearman_ci(runs[latent], runs[rel], n_boot, seed=seed, groups=runs["config"])})
    df = pd.DataFrame(rows)
    df["verdict"] = [verdict(r) for r in df.to_dict("records")]
    return df


def leave_one_config_out(runs: pd.DataFrame, latent: str, error: str = "test_mae") -> pd.DataFrame:
    """For each configuration, its runs' error predicted from the other configurations of the same
    target twice: a straight line in latent structure, and their mean. One row per held-out
    configuration with both absolute errors in units of the target's error spread (sd over its runs);
    targets with fewer than three configurations are skipped (a line through fewer cannot be tested)."""
    rows = []
    for target, t in runs.groupby("target", sort=False):
        configs = list(dict.fromkeys(t["config"]))
        sd = float(t[error].std())
        if len(configs) < 3 or not sd > 0:
            continue
        for c in configs:
            train, test = t[t["config"] != c], t[t["config"] == c]
            x, y = train[latent].to_numpy(float), train[error].to_numpy(float)
            if np.ptp(x) > 0:
                slope, icept = np.polyfit(x, y, 1)
                line = slope * test[latent].to_numpy(float) + icept
            else:
                line = np.full(len(test), y.mean())
            rows.append({"target": target, "config": c, "runs": len(test),
                         "error_latent": float(np.abs(test[error] - line).mean() / sd),
                         "error_mean": float(np.abs(test[error] - y.mean()).mean() / sd)})
    return pd.DataFrame(rows, columns=["target", "config", "runs", "error_latent", "error_mean"])


def loco_verdict(loco: pd.DataFrame) -> str:
    if loco.empty:
        return "Leave-one-configuration-out: no target has three configurations, so it cannot be run."
    better = int((loco["error_latent"] < loco["error_mean"]).sum())
    a, b = loco["error_latent"].mean(), loco["error_mean"].mean()
    text = (f"Leave-one-configuration-out: predicting a held-out configuration's error from latent structure "
            f"misses by {a:.2f} target sd on average, predicting the other configurations' mean by {b:.2f}; "
            f"the latent line is closer for {better} of {len(loco)} configurations")
    return text + (": latent structure predicts error better than the mean." if a < b and better > len(loco) / 2
                   else ": latent structure does not predict error better than the mean.")


def verdict(row: dict) -> str:
    """One sentence a reader can act on."""
    n, rho, lo, hi = row["n"], row["rho"], row["ci_low"], row["ci_high"]
    if not np.isfinite(rho):
        return f"{n} runs: no correlation can be computed."
    groups = row.get("groups", n)
    text = (f"Spearman rho = {rho:+.2f} over {n} runs (95% bootstrap interval over "
            f"{groups} {'configurations' if groups < n else 'runs'}: {lo:+.2f} to {hi:+.2f})")
    if n < MIN_RUNS:
        return text + f": too few runs (fewer than {MIN_RUNS}) for this to mean much."
    if lo <= 0 <= hi:
        return text + ": the interval includes 0, so no correlation is shown."
    return text + "."
