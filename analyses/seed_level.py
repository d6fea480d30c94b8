"""Seed-level calls of both studies, made as their plans say (analyses/{lee,miller}/plan.yaml, issue 40): each
planned comparison on its planned seeds, the same in both arms (Welch's t over per-seed values, the relative
difference with Fieller's interval, an exact permutation p beside Welch's), Benjamini-Hochberg within the
claim's stated family, a call only where q < alpha. Anything else (fewer or other seeds) is shown as an interim
look and is no call. Miller's claim, an average effect, is one pooled estimate across targets and depths per
size. The sensitivity of each call (leave one seed out, other family scopes, every look so far) comes from
analyses/sensitivity.py. Writes reports/{lee,miller}/tables/seed_level.csv and sensitivity tables,
reports/{lee,miller}/seed_level.md, the verdict section at the head of each study report, and replaces the
report sections that still showed 3-seed bootstrap calls (analyses/stale.py).   Run: python analyses/seed_level.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, command  # noqa: E402

from irrepprobe.experiments.plan import load_plan, look  # noqa: E402
from irrepprobe.fileio import save_csv, save_text  # noqa: E402
from irrepprobe.metrics.paired import (against_paper, corrected, false_discovery, seed_difference,  # noqa: E402
                                      stratified_log_ratio, verdict, within_group_spearman)

# Studies III's per-run table (written by analyses/lee/arm034.py) and its grid of further seeds of Lee's
# headline pair at 16k, which join the curve grid's runs
EXTRA = ("runs_studies3.csv", "lee-seeds16k")
CONVERGE = "runs_converge.csv"  # analyses/lee/converge.py
NO_CALL = "no call (interim look)"


CAPS = {"lee": {1000: 120, 4000: 50, 16000: 15}, "miller": {1000: 60, 3000: 30, 10000: 15}}  # the curve grids'


def _caps(study: str) -> pd.DataFrame:
    """Epochs trained, best epoch and the cap per curve-grid run, from the committed learning_curve table
    (per config, one value per seed: of the seeds in its ``seed_ids`` column, else of seeds 0, 1, ...)."""
    lc = pd.read_csv(ROOT / "reports" / study / "tables" / "learning_curve.csv")
    rows = []
    for r in lc.itertuples():
        seeds = [int(x) for x in str(r.seed_ids).split()] if "seed_ids" in lc else None
        epochs, best = str(r.epochs).split("/"), str(r.best_epoch).split("/")
        for k, (e, b) in enumerate(zip(epochs, best)):
            rows.append({"config": r.config, "seed": seeds[k] if seeds else k, "epochs": int(e),
                         "best_epoch": int(b), "cap": CAPS[study][r.size]})
    return pd.DataFrame(rows)


def _runs(study: str, grid: str = "curve") -> pd.DataFrame:
    """The per-run table of a study's ``grid``: ``curve`` (the curve grid, with Lee's further 16k seeds) or
    ``converge`` (Lee's converged pair at 1k); ``epochs`` and ``cap`` per run."""
    tables = ROOT / "reports" / study / "tables"
    if grid == "converge":
        path = tables / CONVERGE
        return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["config", "size", "seed"])
    frames = []
    for path in sorted((ROOT / "reports" / study).glob("n*/tables/runs.csv")):
        df = pd.read_csv(path)
        df["size"] = int(path.parts[-3][1:])
        frames.append(df.merge(_caps(study), on=["config", "seed"], how="left"))
    extra = tables / EXTRA[0]
    if extra.exists():
        df = pd.read_csv(extra)
        frames.append(df[df["grid"] == EXTRA[1]])
    return pd.concat(frames, ignore_index=True)


def by_family(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A size's runs by L set ("ls=0,1,2"), the configuration name without its size prefix."""
    return {c.split("-", 1)[1]: d for c, d in runs.groupby("config")}


def with_calls(table: pd.DataFrame, family, method: str = "bh", alpha: float = 0.05,
               planned: dict[str, int] | None = None) -> pd.DataFrame:
    """``table`` with adjusted ``q`` within each ``family`` (a column name or a Series of labels) over its
    primary rows (all rows when there is no ``look`` column) and ``call``, the verdict after the correction;
    an interim look gets no q and no call. ``planned``: the size of each family as planned; a planned
    comparison not in yet counts as p = 1, so a q can only fall when it comes in (an upper bound until then)."""
    table = table.copy()
    primary = table["look"] == "primary" if "look" in table else pd.Series(True, index=table.index)
    fam = table[family] if isinstance(family, str) else family
    table["q"] = np.nan
    for name, idx in table[primary].groupby(fam[primary]).groups.items():
        missing = max(0, (planned or {}).get(name, 0) - len(idx))
        q = false_discovery(np.r_[table.loc[idx, "p"].to_numpy(), np.ones(missing)], method)
        table.loc[idx, "q"] = q[:len(idx)]
    table["call"] = [corrected(v, q, alpha) if ok else NO_CALL
                     for v, q, ok in zip(table["verdict"], table["q"], primary)]
    return table


def _budget(a: pd.DataFrame, b: pd.DataFrame) -> str:
    both = pd.concat([a, b])
    if "cap" not in both or both["cap"].isna().any():
        return ""
    hit = int((both["epochs"] >= both["cap"]).sum())
    return f"cap {int(both['cap'].max())} epochs, {hit} of {len(both)} runs hit it"


def _row(c, size, a: pd.DataFrame, b: pd.DataFrame, planned, **extra) -> dict:
    r = seed_difference(a[c.measure].to_numpy(), b[c.measure].to_numpy())
    lo, hi = (r["rel_low"], r["rel_high"]) if c.measure == "test_mae" else (r["ci_low"], r["ci_high"])
    return {"size": size, **extra, "comparison": c.claim, "family": c.family,
            "look": look(planned, a["seed"], b["seed"]), "seeds": f"{len(a)}/{len(b)}",
            "params_a": int(a["params"].iloc[0]), "params_b": int(b["params"].iloc[0]), **r,
            "verdict": verdict(r["ci_low"], r["ci_high"], c.expect),
            "paper": against_paper(lo, hi, c.paper), "budget": _budget(a, b)}


def _arms(c, by: dict, planned: list[int], size: int, rows: list, **extra) -> None:
    """The planned comparison of ``by[c.a]`` with ``by[c.b]`` (or the interim look the runs so far allow)
    and, where more seeds exist than planned, the look on all of them."""
    if c.a not in by or c.b not in by:
        return
    A, B = by[c.a].sort_values("seed"), by[c.b].sort_values("seed")
    pa, pb = A[A["seed"].isin(planned)], B[B["seed"].isin(planned)]
    if len(pa) >= 2 and len(pb) >= 2:
        rows.append(_row(c, size, pa, pb, planned, **extra))
    if (len(A), len(B)) != (len(pa), len(pb)):
        rows.append(_row(c, size, A, B, planned, **extra))


def lee(plan) -> pd.DataFrame:
    rows = []
    for c in plan.comparisons:
        runs = _runs("lee", c.grid)
        for size, planned in c.seeds.items():
            _arms(c, by_family(runs[runs["size"] == size]), planned, size, rows)
    return with_calls(pd.DataFrame(rows), "family", plan.correction, plan.alpha, family_sizes(plan))


def family_sizes(plan) -> dict[str, int]:
    """How many comparisons each family holds as planned (a comparison per size)."""
    out: dict[str, int] = {}
    for c in plan.comparisons:
        out[c.family] = out.get(c.family, 0) + len(c.seeds)
    return out


def _miller_by(runs: pd.DataFrame) -> dict:
    by = {}
    for cfg, d in runs.groupby("config"):
        net, depth, target = re.fullmatch(r"n\d+-(L\d)-d(\d)-target=(.+)", cfg).groups()
        by[(net, int(depth), target)] = d
    return by


def pooled_row(c, by: dict, planned: list[int], size: int, depth: int | None = None) -> dict:
    """Miller's average: L1 against L0 pooled over the target x depth strata (one depth if ``depth``)."""
    def sel(d):
        return d[d["seed"].isin(planned)]["test_mae"].to_numpy()

    strata = [(net, dp, t) for net, dp, t in sorted(by) if net == "L1" and ("L0", dp, t) in by and depth in (None, dp)]
    r = stratified_log_ratio([(sel(by[k]), sel(by[("L0", k[1], k[2])])) for k in strata])
    runs = pd.concat([by[k] for k in strata] + [by[("L0", k[1], k[2])] for k in strata])
    runs = runs[runs["seed"].isin(planned)]
    # primary only when every stratum has exactly the planned seeds in both nets
    kinds = {look(planned, by[k]["seed"][by[k]["seed"].isin(planned)],
                  by[("L0", k[1], k[2])]["seed"][by[("L0", k[1], k[2])]["seed"].isin(planned)]) for k in strata}
    return {"size": size, "comparison": c.claim + ("" if depth is None else f", depth {depth}"), "family": c.family,
            "look": kinds.pop() if len(kinds) == 1 else "interim look (strata with other seeds)",
            "seeds": f"{len(planned)}/{len(planned)}", **r,
            "verdict": verdict(r["rel_low"], r["rel_high"], c.expect),
            "paper": against_paper(r["rel_low"], r["rel_high"], c.paper),
            "budget": f"{int((runs['epochs'] >= runs['cap']).sum())} of {len(runs)} runs hit their cap"}


def miller(plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-target comparisons (L1 - L0 per target and depth; depth 3 - depth 2 per net and target) and
    the pooled average of L1 against L0 over target x depth strata per size."""
    runs = _runs("miller")
    rows, pooled = [], []
    for c in plan.comparisons:
        for size, planned in c.seeds.items():
            by = _miller_by(runs[runs["size"] == size])
            if c.pooled:
                pooled.append(pooled_row(c, by, planned, size))
                continue
            if c.a.startswith("L"):  # L1 - L0 per depth and target
                for depth, target in sorted({(depth, target) for _, depth, target in by}):
                    sub = {n: by[(n, depth, target)] for n in (c.a, c.b) if (n, depth, target) in by}
                    _arms(c, sub, planned, size, rows, target=target, where=f"depth {depth}")
            else:  # depth 3 - depth 2 per net and target
                for net, target in sorted({(net, target) for net, _, target in by}):
                    sub = {k: by[(net, int(k[1:]), target)] for k in (c.a, c.b) if (net, int(k[1:]), target) in by}
                    _arms(c, sub, planned, size, rows, target=target, where=net)
    t = pd.DataFrame(rows)
    t["comparison"] = t["comparison"] + ", " + t.pop("where")
    t = with_calls(t, "family", plan.correction, plan.alpha)  # the per-target families as they stand (36 each)
    p = with_calls(pd.DataFrame(pooled), "family", plan.correction, plan.alpha, family_sizes(plan))
    return t, p


def lee_blocks_by_depth() -> pd.DataFrame:
    """Every block's latent score (config means over seeds, from each size's latent_mean.csv), l>0 blocks
    included, by relative depth: the stream leaving layer k of n at (k+1)/n. No interval: the per-run
    per-block scores are not in the committed tables."""
    rows = []
    for path in sorted((ROOT / "reports" / "lee").glob("n*/tables/latent_mean.csv")):
        df = pd.read_csv(path)
        df = df[df["point"].str.fullmatch(r"layers\.\d+")]
        df["k"] = df["point"].str.split(".").str[1].astype(int)
        for config, d in df.groupby("config"):
            n = d["k"].max() + 1
            for k, e in d.groupby("k"):
                l = e["block"].str[:-1].astype(int)
                rows.append({"size": int(path.parts[-3][1:]), "config": config.split("-", 1)[1],
                             "relative depth": round((k + 1) / n, 2), "0e": e.loc[l == 0, "knn_r2"].mean(),
                             "l>0 blocks": e.loc[l > 0, "knn_r2"].mean(), "all blocks": e["knn_r2"].mean()})
    return pd.DataFrame(rows).sort_values(["size", "config", "relative depth"], ignore_index=True)


def miller_latent() -> pd.DataFrame:
    """Latent structure against test error with the confounds of the name-matched score removed: both
    standardised within a group, Spearman's rho pooled, a within-group permutation p. Groups: target x depth
    (the study report's, which mixes the L0 and L1 runs) and target x depth x net (the seeds of one model)."""
    runs = _runs("miller")
    rows = []
    for size, g in runs.groupby("size"):
        depth = g["config"].str.extract(r"-d(\d)-")[0]
        net = g["config"].str.extract(r"-(L\d)-")[0]
        for within, groups in (("target x depth", g["target"] + "/" + depth),
                               ("target x depth x net", g["target"] + "/" + depth + "/" + net)):
            rows.append({"size": size, "within": within, "runs": len(g),
                         **within_group_spearman(g["latent"], g["test_mae"], groups)})
    return pd.DataFrame(rows)


def _table(df: pd.DataFrame, digits: str = ".3g") -> list[str]:
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(lambda v: f"{v:{digits}}")
    return ["| " + " | ".join(map(str, shown.columns)) + " |", "|" + "---|" * len(shown.columns),
            *["| " + " | ".join(str(v) for v in r) + " |" for r in shown.itertuples(index=False)], ""]


def main() -> None:
    from sensitivity import write_study  # noqa: PLC0415 - it imports this module

    for study in ("lee", "miller"):
        plan = load_plan(ROOT / "analyses" / study / "plan.yaml")
        write_study(study, plan, command())


if __name__ == "__main__":
    main()
