"""Test error with intervals that respect how it was measured: every configuration on the same test
molecules (so two configurations are compared molecule by molecule, a paired design) and a few training
seeds each (so the seeds' spread is part of the uncertainty too).

Both functions take absolute errors as arrays [seeds, molecules] whose columns are the same molecules
in the same order, and draw, per bootstrap resample, molecules with replacement (one draw shared by both
sides: the pairing) and, independently for each side, seeds with replacement."""
from __future__ import annotations

import numpy as np
import pandas as pd


def _check(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 2:
        raise ValueError(f"{name}: expected absolute errors [seeds, molecules] with at least 2 molecules, "
                         f"got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: errors must be finite")
    return a


def _draws(a: np.ndarray, mols: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean absolute error of ``a`` per resample: seeds drawn with replacement, molecules ``mols``."""
    S = a.shape[0]
    counts = np.stack([np.bincount(rng.integers(0, S, S), minlength=S) for _ in range(len(mols))]) / S
    per_mol = counts @ a  # [resamples, molecules]: the seed-averaged error of each molecule
    return np.take_along_axis(per_mol, mols, axis=1).mean(1)


def mae_interval(a, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean absolute error over seeds and molecules, with a bootstrap interval over both."""
    a = _check(a, "a")
    rng = np.random.default_rng(seed)
    mols = rng.integers(0, a.shape[1], (n_boot, a.shape[1]))
    d = _draws(a, mols, rng)
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return {"mae": float(a.mean()), "ci_low": float(lo), "ci_high": float(hi), "seeds": a.shape[0],
            "molecules": a.shape[1]}


def paired_difference(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """MAE of ``a`` minus MAE of ``b`` on the same molecules, with a paired bootstrap interval; ``relative``
    is the difference over b's MAE, with its interval. ``p``: two-sided bootstrap p-value of no difference
    (twice the share of resamples on the far side of zero, at least 1/n_boot)."""
    a, b = _check(a, "a"), _check(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must hold the same molecules: {a.shape[1]} and {b.shape[1]} columns")
    rng = np.random.default_rng(seed)
    mols = rng.integers(0, a.shape[1], (n_boot, a.shape[1]))
    da, db = _draws(a, mols, rng), _draws(b, mols, rng)
    diff, rel = da - db, (da - db) / db
    q = [(1 - level) / 2, (1 + level) / 2]
    (lo, hi), (rlo, rhi) = np.quantile(diff, q), np.quantile(rel, q)
    d0 = float(a.mean() - b.mean())
    far = (diff <= 0).mean() if d0 > 0 else (diff >= 0).mean()
    return {"mae_a": float(a.mean()), "mae_b": float(b.mean()), "diff": d0, "ci_low": float(lo),
            "ci_high": float(hi), "relative": d0 / float(b.mean()), "rel_low": float(rlo), "rel_high": float(rhi),
            "p": float(min(1.0, max(2 * far, 1 / n_boot))), "seeds_a": a.shape[0], "seeds_b": b.shape[0],
            "molecules": a.shape[1]}


def verdict(low: float, high: float, expect: str) -> str:
    """A finding that predicts a difference of sign ``expect`` ("negative" or "positive") against an
    interval [low, high]: ``reproduced`` when the interval lies wholly on that side of zero, ``not
    reproduced`` when it lies wholly on the other side, ``not decidable at this scale`` when it covers zero."""
    if expect not in ("negative", "positive"):
        raise ValueError(f"expect must be 'negative' or 'positive', got {expect!r}")
    below, above = high < 0, low > 0
    if (below and expect == "negative") or (above and expect == "positive"):
        return "reproduced"
    if below or above:
        return "not reproduced"
    return "not decidable at this scale"


def seed_difference(a, b, level: float = 0.95) -> dict:
    """Configuration ``a`` against ``b`` at the level of training runs: each run's test MAE (``a`` and
    ``b``: one MAE per seed, or errors [seeds, molecules] on the same molecules, averaged per seed) is one
    observation, and the difference of the means gets Welch's t interval and test (unequal variances,
    Welch-Satterthwaite degrees of freedom). With 3 seeds a side this is what the data support: the
    molecule bootstrap of :func:`paired_difference` treats the seeds as fixed and covers about 79% at
    nominal 95% (tests/test_paired.py checks both by simulation). ``relative``: the difference over b's
    mean MAE, ``rel_low``/``rel_high`` its Fieller interval (:func:`fieller`, b's uncertainty propagated;
    dividing the difference's interval by b's mean undercovers where a/b is far from 1); ``p_perm`` the exact
    permutation p of the difference beside Welch's."""
    from scipy import stats

    def per_seed(x, name):
        x = np.asarray(x, dtype=float)
        x = x.mean(axis=1) if x.ndim == 2 else x
        if x.ndim != 1 or len(x) < 2 or not np.isfinite(x).all():
            raise ValueError(f"{name}: expected at least 2 finite per-seed MAEs, got {x}")
        return x

    a, b = per_seed(a, "a"), per_seed(b, "b")
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(level)
    d, mb = float(a.mean() - b.mean()), float(b.mean())
    lo, hi = fieller(a, b, level)
    return {"mae_a": float(a.mean()), "mae_b": mb, "diff": d, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "relative": d / mb, "rel_low": lo - 1, "rel_high": hi - 1, "p": float(res.pvalue),
            "p_perm": permutation_p(a, b), "df": float(res.df), "seeds_a": len(a), "seeds_b": len(b),
            "per_seed_a": " ".join(f"{v:.4g}" for v in a), "per_seed_b": " ".join(f"{v:.4g}" for v in b)}


def fieller(a, b, level: float = 0.95) -> tuple[float, float]:
    """Fieller's interval for the ratio of means mean(a) / mean(b) of two independent samples with unequal
    variances: the ratios r for which mean(a) - r mean(b) is not significantly different from zero by
    Welch's t, with Welch-Satterthwaite degrees of freedom at each r (found by iterating the quadratic's
    roots), so that r = 1 lies outside it exactly when Welch's test of the difference rejects. ``(nan, nan)``
    when b's mean is not significantly away from zero: the set is then unbounded and no ratio interval exists."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)

    def t_at(r):
        if np.isinf(r):
            return stats.t.ppf((1 + level) / 2, len(b) - 1 if vb > 0 else np.inf)
        den = va ** 2 / (len(a) - 1) + (r ** 2 * vb) ** 2 / (len(b) - 1)
        return stats.t.ppf((1 + level) / 2, (va + r ** 2 * vb) ** 2 / den if den > 0 else np.inf)

    def roots(t):  # of (mb^2 - t^2 vb) r^2 - 2 ma mb r + (ma^2 - t^2 va) = 0
        lead = mb ** 2 - t ** 2 * vb
        if lead <= 0:
            return np.nan, np.nan
        half = t * np.sqrt(max(ma ** 2 * vb + mb ** 2 * va - t ** 2 * va * vb, 0.0))
        return (ma * mb - half) / lead, (ma * mb + half) / lead

    if mb ** 2 - t_at(np.inf) ** 2 * vb <= 0:  # far out the test's df tends to b's: unbounded there
        return float("nan"), float("nan")
    lo, hi = roots(t_at(ma / mb))
    for _ in range(100):
        new = roots(t_at(lo))[0], roots(t_at(hi))[1]
        if not np.isfinite(new).all():
            return float("nan"), float("nan")
        if max(abs(new[0] - lo), abs(new[1] - hi)) < 1e-12 * max(1.0, abs(hi)):
            lo, hi = new
            break
        lo, hi = new
    return float(lo), float(hi)


def permutation_p(a, b, max_splits: int = 100_000, seed: int = 0) -> float:
    """Two-sided p of the difference of means under exchangeability of all runs: every split of the pooled
    values into groups of len(a) and len(b) (random splits beyond ``max_splits``). With 3 seeds a side there
    are only 20 splits, so p cannot fall below 0.1."""
    from itertools import combinations
    from math import comb

    a, b = np.asarray(a, float), np.asarray(b, float)
    x, n = np.concatenate([a, b]), len(a)
    obs = abs(a.mean() - b.mean())
    if comb(len(x), n) <= max_splits:
        idx = np.array(list(combinations(range(len(x)), n)))
    else:
        rng = np.random.default_rng(seed)
        idx = np.array([rng.permutation(len(x))[:n] for _ in range(max_splits)])
    mask = np.zeros((len(idx), len(x)), bool)
    np.put_along_axis(mask, idx, True, axis=1)
    da = (mask * x).sum(1) / n - (~mask * x).sum(1) / (len(x) - n)
    hits = int((np.abs(da) >= obs - 1e-12 * max(1.0, obs)).sum())
    if comb(len(x), n) <= max_splits:
        return hits / len(idx)  # every split, the observed one among them
    return (hits + 1) / (len(idx) + 1)  # random splits: the observed one counted once more


def stratified_log_ratio(pairs, level: float = 0.95) -> dict:
    """An average effect over strata (e.g. targets x depths): ``pairs`` a list of (a, b) per-seed MAEs, one
    pair per stratum. The estimate is the mean over strata of log(mean a / mean b), each term's variance by
    the delta method from its own seeds (var a / (n mean a^2) + the same for b), Welch-Satterthwaite degrees
    of freedom over all the terms; ``relative`` is exp(estimate) - 1 with its interval. Strata in different
    units weigh alike, and no stratum's spread is borrowed by another. ``relative`` is the geometric mean of
    the strata's ratios minus 1; its interval is about these strata (fixed effects). ``between_low`` and
    ``between_high``: the t interval over the strata's log ratios (K - 1 degrees of freedom), the strata taken
    as a sample of strata, wider where the effect differs between them."""
    from scipy import stats

    if not pairs:
        raise ValueError("no strata to pool")
    K = len(pairs)
    est, terms, logs = 0.0, [], []
    for a, b in pairs:
        a, b = np.asarray(a, float), np.asarray(b, float)
        logs.append(np.log(a.mean() / b.mean()))
        est += logs[-1] / K
        terms += [(a.var(ddof=1) / (len(a) * a.mean() ** 2) / K ** 2, len(a) - 1),
                  (b.var(ddof=1) / (len(b) * b.mean() ** 2) / K ** 2, len(b) - 1)]
    var = sum(v for v, _ in terms)
    df = var ** 2 / sum(v ** 2 / d for v, d in terms) if var > 0 else np.inf
    se = np.sqrt(var)
    t = stats.t.ppf((1 + level) / 2, df)
    p = float(2 * stats.t.sf(abs(est) / se, df)) if se > 0 else float(est == 0)
    between = np.std(logs, ddof=1) / np.sqrt(K) if K > 1 else np.nan  # the strata as a sample of strata
    tb = stats.t.ppf((1 + level) / 2, K - 1) if K > 1 else np.nan
    return {"strata": K, "log_ratio": float(est), "se": float(se), "df": float(df), "relative": float(np.expm1(est)),
            "rel_low": float(np.expm1(est - t * se)), "rel_high": float(np.expm1(est + t * se)), "p": p,
            "between_low": float(np.expm1(est - tb * between)), "between_high": float(np.expm1(est + tb * between))}


def leave_one_out(a, b) -> pd.DataFrame:
    """:func:`seed_difference` with one seed dropped from a, from b, and one from each: how far a call leans
    on a single run. One row per drop (``dropped_a``/``dropped_b``: the position dropped, -1 for none)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rows = []
    for i in range(-1, len(a)):
        for j in range(-1, len(b)):
            if (i, j) == (-1, -1):
                continue
            r = seed_difference(np.delete(a, i) if i >= 0 else a, np.delete(b, j) if j >= 0 else b)
            rows.append({"dropped_a": i, "dropped_b": j, **{k: r[k] for k in ("ci_low", "ci_high", "relative", "rel_low",
                                                                            "rel_high", "p", "seeds_a", "seeds_b")}})
    return pd.DataFrame(rows)


def false_discovery(p, method: str = "bh") -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) of a family of comparisons (scipy's
    ``false_discovery_control``): call a difference only where q < 0.05 keeps the expected share of
    false calls among those made below 5%. ``method``: "bh", "by" (Benjamini-Yekutieli, any dependence) or
    "holm" (the family-wise error rate)."""
    from scipy import stats

    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if method not in ("bh", "by", "holm"):
        raise ValueError(f"method must be 'bh', 'by' or 'holm', got {method!r}")
    if ok.any() and method == "holm":
        x = p[ok]
        order = np.argsort(x)
        adj = np.minimum(1, np.maximum.accumulate((len(x) - np.arange(len(x))) * x[order]))
        q[np.flatnonzero(ok)[order]] = adj
    elif ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method=method)
    return q


def against_paper(low: float, high: float, paper: float | None) -> str:
    """Whether an effect size a paper reported (same scale as the interval, e.g. a relative change of
    -0.58 for "58% lower") lies inside the interval: ``paper's effect size excluded`` when it does not."""
    if paper is None or not np.isfinite(paper):
        return ""
    return "paper's effect size inside the interval" if low <= paper <= high else "paper's effect size excluded"


def corrected(verdict_: str, q: float, alpha: float = 0.05) -> str:
    """A verdict of :func:`verdict` after the family's false-discovery correction: a call either way stands
    only where the comparison's q-value (:func:`false_discovery`) is below ``alpha``."""
    if verdict_ in ("reproduced", "not reproduced") and not (np.isfinite(q) and q < alpha):
        return "not decidable after the false-discovery correction"
    return verdict_


def within_group_spearman(x, y, groups, n_perm: int = 10000, seed: int = 0) -> dict:
    """Spearman's rho of ``x`` and ``y`` after standardising both within each group (so that a difference
    between groups, e.g. targets of different units or models of different depth, is no part of it), and
    the two-sided p of a permutation test that shuffles ``x`` within groups (exact under the null that
    within every group x and y are unrelated). Groups whose x or y has no spread are left out and counted
    (``degenerate``)."""
    from scipy import stats

    df = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float), "g": np.asarray(groups)})
    z, degenerate = [], 0
    for _, d in df.groupby("g", sort=False):
        sx, sy = d["x"].std(ddof=0), d["y"].std(ddof=0)
        if len(d) < 2 or not (sx > 1e-12 and sy > 1e-12):
            degenerate += 1
            continue
        z.append(pd.DataFrame({"x": (d["x"] - d["x"].mean()) / sx, "y": (d["y"] - d["y"].mean()) / sy,
                               "g": d["g"]}))
    if not z:
        return {"rho": float("nan"), "p": float("nan"), "n": 0, "groups": 0, "degenerate": degenerate}
    z = pd.concat(z, ignore_index=True)
    rho = float(stats.spearmanr(z["x"], z["y"]).statistic)
    rng = np.random.default_rng(seed)
    idx = [np.flatnonzero(z["g"].to_numpy() == g) for g in z["g"].unique()]
    xs, ys = z["x"].to_numpy(), z["y"].to_numpy()
    hits = 0
    for _ in range(n_perm):
        xp = xs.copy()
        for i in idx:
            xp[i] = xs[rng.permutation(i)]
        hits += abs(stats.spearmanr(xp, ys).statistic) >= abs(rho) - 1e-12
    return {"rho": rho, "p": (hits + 1) / (n_perm + 1), "n": len(z), "groups": len(idx), "degenerate": degenerate}
