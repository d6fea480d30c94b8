"""Seed-level statistics for both studies, from their committed per-run tables (issue 27): every comparison
of configurations with Welch's t interval and p over per-seed test MAEs (metrics.paired.seed_difference, whose
coverage tests/test_paired.py checks at 3 and 5 seeds), Benjamini-Hochberg q-values across each study's
family of comparisons, the per-seed MAEs, the parameter counts, and, where the paper reported one, whether its
effect size lies inside the interval. Writes reports/{lee,miller}/tables/seed_level.csv and
reports/{lee,miller}/seed_level.md.   Run: python analyses/seed_level.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, command  # noqa: E402

from irrepprobe.fileio import save_csv, save_text  # noqa: E402
from irrepprobe.metrics.paired import (against_paper, corrected, false_discovery, seed_difference, verdict,  # noqa: E402
                                      within_group_spearman)

# Lee et al. (their Table: [0,3,4,5,6] reached a 58% lower test MAE than [0,1,2,3,4] on U0)
LEE = [("Lee et al.: [0,3,4,5,6] beats [0,1,2,3,4]", "ls=0,3,4,5,6", "ls=0,1,2,3,4", "negative", -0.58),
       ("[0,1,2,3,4] against [0,1,2]", "ls=0,1,2,3,4", "ls=0,1,2", "negative", None),
       ("[0,1,2] against scalars only [0]", "ls=0,1,2", "ls=0", "negative", None)]


# Studies III's per-run table (written by analyses/lee/arm034.py) and its grid of further seeds of Lee's
# headline pair at 16k, which join the curve grid's runs
EXTRA = ("runs_studies3.csv", "lee-seeds16k")


def _runs(study: str) -> pd.DataFrame:
    frames = []
    for path in sorted((ROOT / "reports" / study).glob("n*/tables/runs.csv")):
        df = pd.read_csv(path)
        df["size"] = int(path.parts[-3][1:])
        frames.append(df)
    extra = ROOT / "reports" / study / "tables" / EXTRA[0]
    if extra.exists():
        df = pd.read_csv(extra)
        frames.append(df[df["grid"] == EXTRA[1]])
    return pd.concat(frames, ignore_index=True)


def by_family(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A size's runs by L set ("ls=0,1,2"), the configuration name without its size prefix."""
    return {c.split("-", 1)[1]: d for c, d in runs.groupby("config")}


def with_calls(table: pd.DataFrame, family) -> pd.DataFrame:
    """``table`` with Benjamini-Hochberg ``q`` within each ``family`` of comparisons (a column name or a
    Series of labels) and ``call``, the verdict after the correction."""
    table["q"] = np.nan
    for _, idx in table.groupby(family).groups.items():
        table.loc[idx, "q"] = false_discovery(table.loc[idx, "p"].to_numpy())
    table["call"] = [corrected(v, q) for v, q in zip(table["verdict"], table["q"])]
    return table


def _row(size, name, a_runs, b_runs, expect, paper=None, **extra) -> dict:
    r = seed_difference(a_runs["test_mae"].to_numpy(), b_runs["test_mae"].to_numpy())
    return {"size": size, **extra, "comparison": name, "params_a": int(a_runs["params"].iloc[0]),
            "params_b": int(b_runs["params"].iloc[0]), **r,
            "verdict": verdict(r["rel_low"], r["rel_high"], expect) if expect else "",
            "paper": against_paper(r["rel_low"], r["rel_high"], paper)}


def lee(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for size, g in runs.groupby("size"):
        by = by_family(g)
        for name, a, b, expect, paper in LEE:
            if a in by and b in by:
                rows.append(_row(size, name, by[a], by[b], expect, paper))
    return pd.DataFrame(rows)


def miller(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for size, g in runs.groupby("size"):
        by = {}
        for c, d in g.groupby("config"):
            net, depth, target = re.fullmatch(r"n\d+-(L\d)-d(\d)-target=(.+)", c).groups()
            by[(net, int(depth), target)] = d
        for (net, depth, target), d in sorted(by.items()):
            if net == "L1" and ("L0", depth, target) in by:
                rows.append(_row(size, f"L1 - L0, depth {depth}", d, by[("L0", depth, target)], "negative",
                                 target=target))
            if depth == 3 and (net, 2, target) in by:
                rows.append(_row(size, f"depth 3 - depth 2, {net}", d, by[(net, 2, target)], "negative",
                                 target=target))
    return pd.DataFrame(rows)


def lee_latent(runs: pd.DataFrame) -> pd.DataFrame:
    """Lee et al.'s second claim, sets without l=1,2 have better latent structure, at the seed level: each
    run's latent score (kNN R2 of the target, mean over the blocks every run has, which in this study are
    the 0e streams) for [0,3,4,5,6] against [0,1,2,3,4]."""
    rows = []
    for size, g in runs.groupby("size"):
        by = by_family(g)
        a, b = by.get("ls=0,3,4,5,6"), by.get("ls=0,1,2,3,4")
        if a is None or b is None:
            continue
        r = seed_difference(a["latent"].to_numpy(), b["latent"].to_numpy())
        rows.append({"size": size, "comparison": "latent score, [0,3,4,5,6] - [0,1,2,3,4] (0e streams)",
                     **{k: r[k] for k in ("mae_a", "mae_b", "diff", "ci_low", "ci_high", "p", "per_seed_a",
                                          "per_seed_b")},
                     "verdict": verdict(r["ci_low"], r["ci_high"], "positive")})
    t = pd.DataFrame(rows).rename(columns={"mae_a": "latent_a", "mae_b": "latent_b"})
    return with_calls(t, pd.Series("all", index=t.index))


def lee_blocks_by_depth(study: str) -> pd.DataFrame:
    """Every block's latent score (config means over seeds, from each size's latent_mean.csv), l>0 blocks
    included, by relative depth: the stream leaving layer k of n at (k+1)/n. No interval: the per-run
    per-block scores are not in the committed tables."""
    rows = []
    for path in sorted((ROOT / "reports" / study).glob("n*/tables/latent_mean.csv")):
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


def miller_latent(runs: pd.DataFrame) -> pd.DataFrame:
    """Latent structure against test error with the confounds of the name-matched score removed: both
    standardised within target and depth (the L0 and L1 runs of one target at one depth, whose score is
    read at the same relative depth), Spearman's rho pooled, a within-group permutation p."""
    rows = []
    for size, g in runs.groupby("size"):
        depth = g["config"].str.extract(r"-d(\d)-")[0]
        r = within_group_spearman(g["latent"], g["test_mae"], g["target"] + "/" + depth)
        rows.append({"size": size, "runs": len(g), **r})
    return pd.DataFrame(rows)


def _md(study: str, table: pd.DataFrame, old: pd.DataFrame) -> str:
    fam = table["comparison"].str.startswith("L1 - L0") if study == "miller" else table["comparison"] != ""
    n_fam = int(fam.sum())
    called = table[fam & (table["verdict"] == "reproduced")]
    held = called[called["call"] == "reproduced"]
    before = int((old["verdict"] == "reproduced").sum()) if "verdict" in old else None
    lines = [f"# {study}: seed-level statistics", "",
             f"Made by `{command()}` from the committed per-run tables (`n*/tables/runs.csv`"
             + (", and for the headline pair at 16k the further seeds of `tables/runs_studies3.csv`, written by "
                "`analyses/lee/arm034.py`" if study == "lee" else "") + "): one test MAE per training run, so a comparison of configurations rests on the seeds (Welch's t over per-seed MAEs, "
             "95%; `p` its test, `q` the Benjamini-Hochberg adjusted p across the family of comparisons a claim rests on: Lee's comparisons together, Miller's L1-vs-L0 and depth comparisons apart). The "
             "molecule bootstrap of the study report treats the seeds as fixed: at 3 seeds it covers about 79% "
             "at nominal 95% (simulation, tests/test_paired.py), which is why its intervals were too narrow.", ""]
    if study == "miller":
        lines += [f"L1 against L0: {len(called)} of {n_fam} comparisons have a seed-level interval below zero "
                  f"(reproduced), {len(held)} of those also q < 0.05" + (
                      f"; the study report called {int((old['comparison'].str.startswith('L1 - L0') & (old['verdict'] == 'reproduced')).sum())} reproduced on the molecule bootstrap." if before is not None else "."), ""]
    cols = [c for c in ["size", "target", "comparison", "params_a", "params_b", "per_seed_a", "per_seed_b", "diff",
                        "ci_low", "ci_high", "relative", "rel_low", "rel_high", "p", "q", "verdict", "call", "paper"]
            if c in table]
    lines += [*_table(table[cols]), "Table: [tables/seed_level.csv](tables/seed_level.csv). `relative`: the difference over b's "
              "mean MAE. `verdict`: from the interval alone; `call`: the verdict after the false-discovery correction "
              "(a call either way stands only where q < 0.05). `paper`: whether the effect size the paper reported "
              "lies inside the interval.", ""]
    return "\n".join(lines)


def _table(df: pd.DataFrame, digits: str = ".3g") -> list[str]:
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "f":
            shown[c] = shown[c].map(lambda v: f"{v:{digits}}")
    return ["| " + " | ".join(map(str, shown.columns)) + " |", "|" + "---|" * len(shown.columns),
            *["| " + " | ".join(str(v) for v in r) + " |" for r in shown.itertuples(index=False)], ""]


def _md_latent_lee(latent: pd.DataFrame, depth: pd.DataFrame) -> str:
    last = depth[depth["relative depth"] == 1.0].drop(columns="relative depth")
    return "\n".join([
        "## Lee et al.'s second claim: sets without l=1,2 have better latent structure", "",
        "Per run, the latent score is the kNN R2 of the target on the 2-D map of a block, averaged over the "
        "blocks every run has (here the 0e streams leaving each layer: the l>0 blocks differ between the sets). "
        "Welch's t over the per-seed scores; `q` over the three sizes; `call` after the correction.", "",
        *_table(latent[["size", "comparison", "per_seed_a", "per_seed_b", "diff", "ci_low", "ci_high", "p", "q",
                        "verdict", "call"]]),
        "With the l>0 blocks Lee et al. looked at, by relative depth (the stream leaving the last layer here; "
        "config means over 3 seeds, no interval: the committed tables hold per-block scores only as config "
        "means; `tables/latent_by_depth.csv` has every layer):", "",
        *_table(last), ""])


def _md_latent_miller(t: pd.DataFrame) -> str:
    return "\n".join([
        "## Latent structure against test error, within target and depth", "",
        "The study report's rho (+0.44 to +0.48, \"more structure goes with higher error\") pooled every run "
        "with the score read from blocks matched by name: `layers.1 0e` is the last hidden stream at depth 2 "
        "and a middle one at depth 3, and targets differ in units and difficulty. Here both the score and "
        "the error are standardised within each target and depth (the 6 runs of L0 and L1 there), Spearman's "
        "rho is pooled over those groups, and `p` comes from shuffling the scores within groups "
        "(metrics.paired.within_group_spearman).", "",
        *_table(t[["size", "runs", "groups", "degenerate", "rho", "p"]]), ""])


BEGIN, END = "<!-- seed-level verdicts: analyses/seed_level.py -->", "<!-- end of seed-level verdicts -->"


def _pct(r) -> str:
    return f"{100 * r.relative:+.1f}% [{100 * r.rel_low:+.1f}, {100 * r.rel_high:+.1f}]"


def _verdicts(study: str, table: pd.DataFrame, latent: pd.DataFrame | None) -> str:
    """The section that leads the study report: the seed-level verdicts, which supersede its own."""
    lines = [BEGIN, "## Verdicts at the seed level", "",
             "These supersede the bootstrap verdicts below (see the note above): Welch's t over per-seed test MAEs, "
             "`q` Benjamini-Hochberg across the claim's family, `call` the verdict after it (it stands only where "
             "q < 0.05), `paper` whether the paper's effect size lies inside the interval. Relative: a minus b "
             "over b's MAE. Every row with its per-seed MAEs is in [seed_level.md](seed_level.md).", ""]
    if study == "lee":
        rows = [{"finding": r.comparison, "size": r.size, "seeds": f"{r.seeds_a}/{r.seeds_b}",
                 "params": f"{r.params_a:,} / {r.params_b:,}", "relative [95%]": _pct(r), "p": f"{r.p:.3g}",
                 "q": f"{r.q:.2g}", "call": r.call, "paper": r.paper} for r in table.itertuples()]
        rows += [{"finding": "Lee et al.: sets without l=1,2 have better latent structure (0e streams)",
                  "size": r.size, "seeds": f"{len(r.per_seed_a.split())}/{len(r.per_seed_b.split())}", "params": "",
                  "relative [95%]": f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] (score)",
                  "p": f"{r.p:.3g}", "q": f"{r.q:.2g}", "call": r.call, "paper": ""} for r in latent.itertuples()]
        lines += _table(pd.DataFrame(rows))
        lines += ["The arm that drops l=1 and l=2 alone is in [arm034.md](arm034.md); Lee et al.'s map criterion "
                  "beside dependence and recovery in [map-criterion](map-criterion/README.md).", ""]
    else:
        t = table.assign(kind=table["comparison"].str.split(",").str[0])
        rows = []
        for (kind, size), g in t.groupby(["kind", "size"], sort=False):
            held = g[g["call"] == "reproduced"]
            rows.append({"comparison": kind, "size": size, "comparisons": len(g),
                         "interval below zero": int((g["verdict"] == "reproduced").sum()),
                         "after correction": len(held),
                         "where (after correction)": ", ".join(f"{r.target} ({r.comparison.split(', ')[1]}, "
                                                               f"{100 * r.relative:+.0f}%)" for r in held.itertuples()),
                         "worse (after correction)": int((g["call"] == "not reproduced").sum())})
        lines += _table(pd.DataFrame(rows))
        deep = t[t["kind"] == "depth 3 - depth 2"].drop_duplicates("comparison")
        lines += ["Depth 3 against depth 2 compares " + " and ".join(
            f"{r.params_a:,} with {r.params_b:,} parameters ({r.comparison.split(', ')[1]})" for r in deep.itertuples())
            + ": the deeper nets have more weights.", ""]
    return "\n".join([*lines, END])


def _into_report(study: str, section: str) -> None:
    """Put ``section`` at the head of the study report (after its opening notes), replacing the previous one."""
    path = ROOT / "reports" / study / "README.md"
    text = path.read_text()
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        i = text.index("\n## ")
        text = text[:i + 1] + section + "\n\n" + text[i + 1:]
    save_text(text, path)


def main() -> None:
    for study, make in (("lee", lee), ("miller", miller)):
        runs = _runs(study)
        table = make(runs)
        # the family of comparisons a claim rests on: Lee's three claims together; Miller's L1-vs-L0 claim
        # and its depth comparison apart
        family = table["comparison"].str.split(",").str[0] if study == "miller" else pd.Series("all", index=table.index)
        table = with_calls(table, family)
        out = ROOT / "reports" / study
        old = pd.read_csv(out / "tables" / "paired_differences.csv")
        save_csv(table, out / "tables" / "seed_level.csv")
        text = _md(study, table, old)
        if study == "lee":
            latent, depth = lee_latent(runs), lee_blocks_by_depth(study)
            save_csv(latent, out / "tables" / "latent_seed_level.csv")
            save_csv(depth, out / "tables" / "latent_by_depth.csv")
            text += "\n" + _md_latent_lee(latent, depth)
        else:
            latent = None
            t = miller_latent(runs)
            save_csv(t, out / "tables" / "latent_within_target_depth.csv")
            text += "\n" + _md_latent_miller(t)
        save_text(text, out / "seed_level.md")
        _into_report(study, _verdicts(study, table, latent))
        print(f"-> {out / 'seed_level.md'}")


if __name__ == "__main__":
    main()
