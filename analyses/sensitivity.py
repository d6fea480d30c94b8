"""How far each planned call of analyses/seed_level.py leans on its choices (issue 40): every seed dropped in
turn (and one from each arm), the other scopes a family could have had, Welch's p beside the exact permutation
p, and every look taken so far. Also writes each study's seed_level.md and the verdict section at the head of
its report. Called by analyses/seed_level.py."""
from __future__ import annotations

import numpy as np
import pandas as pd

from common import ROOT
from seed_level import (_miller_by, _runs, _table, by_family, family_sizes, lee, lee_blocks_by_depth,
                        miller, miller_latent, pooled_row)
from stale import BEGIN, END, refresh_sections

from irrepprobe.experiments import load_grid
from irrepprobe.experiments.plan import look
from irrepprobe.fileio import save_csv, save_text
from irrepprobe.metrics.paired import corrected, false_discovery, leave_one_out, seed_difference, verdict

MAE = "test_mae"


def _values(row, study: str, plan) -> tuple[np.ndarray, np.ndarray]:
    """The per-seed values of a table row, from the runs (the table's strings are rounded)."""
    c = plan.comparison(row.comparison)
    runs = _runs(study, c.grid)
    by = by_family(runs[runs["size"] == row.size])
    seeds = c.seeds[row.size]
    pick = lambda d: d[d["seed"].isin(seeds)].sort_values("seed")[c.measure].to_numpy()  # noqa: E731
    return pick(by[c.a]), pick(by[c.b])


def decision(call: str) -> str:
    """A call as a decision: reproduced, not reproduced, or undecided (for whatever reason)."""
    return call if call in ("reproduced", "not reproduced") else "undecided"


def _q_with(p: float, others: np.ndarray, method: str = "bh") -> float:
    return float(false_discovery(np.r_[p, others], method)[0])


def _family_others(prim: pd.DataFrame, r, sizes: dict) -> np.ndarray:
    """The p-values of the other comparisons in row ``r``'s family as planned: those in ``prim`` (primary rows),
    and p = 1 for each planned one not in yet."""
    fam = prim[(prim["family"] == r.family) & (prim.index != r.Index)]["p"].to_numpy()
    return np.r_[fam, np.ones(max(0, sizes.get(r.family, 0) - 1 - len(fam)))]


def scopes(table: pd.DataFrame, rows: pd.Series, method: str = "bh", sizes: dict | None = None,
           alpha: float = 0.05) -> pd.DataFrame:
    """The q and the call of each primary row of ``table`` selected by ``rows`` under other family scopes:
    the plan's, the comparison alone, every primary comparison of the study pooled, and per size."""
    prim = table[(table["look"] == "primary") & rows]
    sizes = sizes or {}
    out = []
    for r in prim.itertuples():
        size = prim[(prim["size"] == r.size) & (prim.index != r.Index)]["p"].to_numpy()
        allp = prim[prim.index != r.Index]["p"].to_numpy()
        q = {"plan family": _q_with(r.p, _family_others(prim, r, sizes), method), "alone": r.p,
             "study pooled": _q_with(r.p, allp, method),
             "per size": _q_with(r.p, size, method)}
        out.append({"size": r.size, "comparison": r.comparison, "family": r.family,
                    **{f"q ({k})": v for k, v in q.items()},
                    "calls": "; ".join(f"{k}: {corrected(r.verdict, v, alpha)}" for k, v in q.items())})
    return pd.DataFrame(out)


def drops(table: pd.DataFrame, study: str, plan) -> pd.DataFrame:
    """Leave one seed out (from a, from b, one from each) for each primary test-MAE call: how many drops keep
    the call, with the family's other p-values fixed."""
    prim = table[(table["look"] == "primary") & table["comparison"].map(lambda c: plan.comparison(c).measure == MAE)]
    out, sizes = [], family_sizes(plan)
    for r in prim.itertuples():
        a, b = _values(r, study, plan)
        fam = _family_others(prim, r, sizes)
        c = plan.comparison(r.comparison)
        loo = leave_one_out(a, b)
        calls = [corrected(verdict(x.ci_low, x.ci_high, c.expect), _q_with(x.p, fam, plan.correction), plan.alpha)
                 for x in loo.itertuples()]
        same = sum(decision(k) == decision(r.call) for k in calls)
        out.append({"size": r.size, "comparison": r.comparison, "seeds": r.seeds, "call": r.call,
                    "drops": len(loo), "drops keeping the decision": same,
                    "relative across drops": f"{100 * loo['relative'].min():+.1f}% to {100 * loo['relative'].max():+.1f}%",
                    "p across drops": f"{loo['p'].min():.3g} to {loo['p'].max():.3g}",
                    "Welch p": r.p, "permutation p": r.p_perm})
    return pd.DataFrame(out)


def looks(table: pd.DataFrame, plan) -> pd.DataFrame:
    """Every look at a planned comparison listed in the plan, recomputed on the seeds it had, then the
    planned one as it stands now."""
    out = []
    for k in plan.looks:
        if "seeds_a" not in k:
            out.append({"look": k["look"], "date": str(k["date"]), "commit": k["commit"], "seeds": "",
                        "relative [95%]": "", "p": "", "how": k["how"]})
            continue
        c = plan.comparison(k["claim"]) if "claim" in k else plan.comparisons[0]
        by = by_family(_runs(plan.study, c.grid).query("size == @k['size']"))
        a = by[c.a][by[c.a]["seed"].isin(k["seeds_a"])][MAE].to_numpy()
        b = by[c.b][by[c.b]["seed"].isin(k["seeds_b"])][MAE].to_numpy()
        r = seed_difference(a, b)
        out.append({"look": k["look"], "date": str(k["date"]), "commit": k["commit"], "seeds": f"{len(a)}/{len(b)}",
                    "relative [95%]": _pct(r), "p": f"{r['p']:.3g}", "how": k["how"]})
    if "seeds_a" in (plan.looks or [{}])[-1]:
        c = plan.comparisons[0]
        now = table[(table["comparison"] == c.claim) & (table["size"] == plan.looks[-1]["size"])]
        for r in now.itertuples():
            out.append({"look": len(out) + 1, "date": "this report", "commit": "", "seeds": r.seeds,
                        "relative [95%]": _pct(r), "p": f"{r.p:.3g}", "how": f"{r.look}: {r.call}"})
    return pd.DataFrame(out)


def _pct(r) -> str:
    g = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    return f"{100 * g('relative'):+.1f}% [{100 * g('rel_low'):+.1f}, {100 * g('rel_high'):+.1f}]"


def miller_scopes(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Miller's per-target L1-vs-L0 calls under each family scope and correction."""
    l1 = table["comparison"].str.startswith("L1 - L0")
    scopes_ = {"plan: L1 - L0 over all sizes, BH (36)": (l1, "bh", None),
               "L1 - L0 with the depth comparisons pooled, BH (72)": (pd.Series(True, index=table.index), "bh", None),
               "L1 - L0 per size, BH (12 each)": (l1, "bh", "size"),
               "L1 - L0 over all sizes, Holm (36)": (l1, "holm", None),
               "L1 - L0 over all sizes, Benjamini-Yekutieli (36)": (l1, "by", None),
               "each comparison alone, no correction": (l1, "none", None)}
    out = []
    for name, (rows, method, per) in scopes_.items():
        t = table[rows].copy()
        groups = t[per] if per else pd.Series(0, index=t.index)
        t["qq"] = t["p"]
        if method != "none":
            for _, idx in t.groupby(groups).groups.items():
                t.loc[idx, "qq"] = false_discovery(t.loc[idx, "p"].to_numpy(), method)
        t = t[t["comparison"].str.startswith("L1 - L0")]
        held = t[[corrected(v, q, alpha) == "reproduced" for v, q in zip(t["verdict"], t["qq"])]]
        out.append({"scope": name, "L1 beats L0 (of 36)": len(held),
                    "where": ", ".join(f"{r.target} n{r.size} {r.comparison.split(', ')[1]}" for r in held.itertuples())})
    return pd.DataFrame(out)


def stop_rule() -> tuple[str, str]:
    """The converged grid's cap and early-stopping rule in words, read from analyses/lee/converge.yaml."""
    t = load_grid(ROOT / "analyses" / "lee" / "converge.yaml").runs[0].config.train
    return (f"{t.epochs:,} epochs", f"{t.early_stop} epochs without a validation MAE more than "
            f"{t.early_stop_delta:.1%} below the best (the plan's revision 1)")


def converge_section(table: pd.DataFrame) -> list[str]:
    runs = _runs("lee", "converge")
    head = "## The headline pair trained to convergence (1k)"
    cap, rule = stop_rule()
    if runs.empty:
        return [head, "", "No converged run has finished yet: `OMP_NUM_THREADS=1 python analyses/lee/converge.py` "
                "(analyses/lee/converge.yaml; several sessions of this machine, each resuming the runs the last one "
                f"saved with `--save-state`). Cap {cap}, early stopping: {rule}.", ""]
    rows = table[table["comparison"].str.startswith("Lee et al.: [0,3,4,5,6] beats") & (table["size"] == 1000)]
    per = runs[["run", "params", "test_mae", "epochs", "best_epoch", "cap", "stopped_early", "train_minutes"]]
    hit = int((~runs["stopped_early"].astype(bool)).sum())
    capped = _runs("lee")
    capped = capped[(capped["size"] == 1000) & capped["config"].str.endswith(("ls=0,3,4,5,6", "ls=0,1,2,3,4"))]
    return [head, "", f"The curve grid's 1k runs of the pair all hit their cap of {capped['cap'].max()} epochs (best epochs "
            f"{capped['best_epoch'].min()}-{capped['best_epoch'].max()}), so their call holds for that budget. Here "
            f"the cap is {cap} and early stopping ({rule}) ends each run; "
            f"{hit} of {len(runs)} finished runs hit the cap.", "",
            *_table(per, ".4g"), "The call beside the capped one (the same test molecules and seeds):", "",
            *_table(rows[["comparison", "look", "seeds", "budget", "per_seed_a", "per_seed_b", "relative", "rel_low",
                          "rel_high", "p", "q", "call"]]), ""]


CALL_COLS = ["size", "comparison", "family", "look", "seeds", "params_a", "params_b", "per_seed_a", "per_seed_b",
             "relative", "rel_low", "rel_high", "p", "p_perm", "q", "verdict", "call", "paper", "budget"]
NOTE = ("One value per training run (its test MAE on the fixed test molecules, or its latent score); Welch's t "
        "over the runs (95%), `p` its test and `p_perm` the exact permutation p (with 3 seeds a side there are "
        "20 splits, so it cannot go below 0.1); `relative` is a over b minus 1 with Fieller's interval (b's "
        "uncertainty propagated); `q` Benjamini-Hochberg within the claim's family as the plan states it, over "
        "the primary rows only. A `call` stands only where the plan's seeds are all in and q < 0.05; "
        "`look` says when a row is an interim look, which is never a call. `budget`: how many runs hit their "
        "epoch cap (a call holds for that budget).")


def _revisions(plan) -> list[str]:
    if not plan.revisions:
        return []
    return ["## Revisions of the plan", "", "Changes after the plan was committed, each with what had been seen of "
            "the data by then.", "", *_table(pd.DataFrame(plan.revisions))]


def _latent_rows(table: pd.DataFrame) -> pd.DataFrame:
    t = table[table["comparison"].str.contains("latent")]
    return t[["size", "comparison", "look", "seeds", "per_seed_a", "per_seed_b", "diff", "ci_low", "ci_high", "p",
              "q", "call"]]


def write_study(study: str, plan, cmd: str) -> None:
    out = ROOT / "reports" / study
    head = [f"# {study}: seed-level calls, as planned", "",
            f"Made by `{cmd}` from the committed per-run tables and the plan `analyses/{study}/plan.yaml` "
            "(its families, seeds per arm, test and threshold). " + NOTE, "", *_revisions(plan)]
    if study == "lee":
        table = lee(plan)
        save_csv(table, out / "tables" / "seed_level.csv")
        mae = table["comparison"].map(lambda c: plan.comparison(c).measure == MAE)
        sc, dr, lk = scopes(table, mae, plan.correction, family_sizes(plan), plan.alpha), drops(table, "lee", plan), looks(table, plan)
        for name, t in (("scopes", sc), ("leave_one_out", dr), ("looks", lk)):
            save_csv(t, out / "tables" / f"sensitivity_{name}.csv")
        prim = table[mae & (table["look"] == "primary")]
        interim = table[mae & (table["look"] != "primary")]
        depth = lee_blocks_by_depth()
        save_csv(depth, out / "tables" / "latent_by_depth.csv")
        last = depth[depth["relative depth"] == 1.0].drop(columns="relative depth")
        text = [*head, "## Calls", "", *_table(prim[CALL_COLS]),
                "## Interim looks (no call)", "", "Comparisons on other seeds than the plan's: the runs so far where "
                "a planned seed is missing, or every seed where an arm has more than planned.", "",
                *_table(interim[CALL_COLS]),
                "## Sensitivity: one seed left out", "", "Each seed dropped in turn from a, from b, and one from each "
                "(the family's other p-values fixed); Welch's p beside the permutation p.", "", *_table(dr),
                "## Sensitivity: the scope of the family", "", "The plan makes each claim a family across sizes "
                "(a planned comparison not in yet counts as p = 1 there). Beside it: the comparison alone, every "
                "primary test-MAE comparison of the study now pooled (issue 27 pooled all 9), and the comparisons "
                "at one size.", "", *_table(sc.drop(columns="calls")),
                "## Every look at the 16k headline", "", "Recomputed on the seeds each look had (Welch, Fieller); "
                "`how` says how it was judged then. Looking again after each added seed and stopping at the first "
                "p < 0.05 raises the false-positive rate (about 4% to 8% at these spreads, issue 40), which is why "
                "the plan fixes 5 against 5 and the earlier looks are no calls.", "", *_table(lk),
                *converge_section(table),
                "## Lee et al.'s second claim: better latent structure without l=1,2", "",
                "Per run, the kNN R2 of the target on the 2-D map of a block, averaged over the blocks every run "
                "has (the 0e streams leaving each layer). Welch over the per-seed scores, `q` over the three "
                "sizes (the plan's family `latent`; a size not in yet counts as p = 1).", "", *_table(_latent_rows(table)),
                "With the l>0 blocks Lee et al. looked at, at the last layer (config means over seeds 0-2, no "
                "interval: the committed tables hold per-block scores only as config means; "
                "`tables/latent_by_depth.csv` has every layer):", "", *_table(last)]
        section = _verdicts_lee(table, mae, lk)
    else:
        table, pooled = miller(plan)
        save_csv(table, out / "tables" / "seed_level.csv")
        by_depth = pd.DataFrame([pooled_row(plan.comparison(pooled["comparison"].iloc[0]),
                                            _miller_by(_runs("miller").query("size == @size")),
                                            plan.comparison(pooled["comparison"].iloc[0]).seeds[size], size, d)
                                 for size in sorted(pooled["size"]) for d in (2, 3)])
        pooled_all = pd.concat([pooled, by_depth.assign(look="sensitivity (one depth)", call="no call (sensitivity)")], ignore_index=True)
        save_csv(pooled_all, out / "tables" / "pooled.csv")
        sc, latent = miller_scopes(table, plan.alpha), miller_latent()
        save_csv(sc, out / "tables" / "sensitivity_scopes.csv")
        save_csv(latent, out / "tables" / "latent_within_target_depth.csv")
        pcols = ["size", "comparison", "family", "look", "seeds", "strata", "relative", "rel_low", "rel_high",
                 "between_low", "between_high", "p", "q", "verdict", "call", "paper", "budget"]
        text = [*head, "## The call: L1 against L0 on average", "", "Miller et al.'s claim is an average effect "
                "(L1 about 23% better). Per size, the mean over the 12 target x depth strata of log(MAE L1 / "
                "MAE L0), each stratum's variance from its own 3 seeds (delta method), Welch-Satterthwaite degrees "
                "of freedom; `relative` is the geometric mean of the ratios L1/L0 minus 1, with its interval over "
                "these six targets (fixed effects). `between_low`/`between_high`: the t interval over the 12 strata's "
                "log ratios, the strata taken as a sample of targets, wider because the effect differs between "
                "targets. The rows per depth are sensitivity, not calls.", "",
                *_table(pooled_all[pcols]),
                "## Per target and depth (the plan's secondary families)", "", *_table(table[CALL_COLS[:2] + ["target"]
                                                                                     + CALL_COLS[2:]]),
                "## Sensitivity: the scope of the per-target family", "", "Issue 27's 10 per-target calls sat "
                "at q 0.045-0.048 in a family of 36; how many stand under other scopes and corrections. With 3 seeds a side the exact permutation p cannot go below 0.1, so no "
                "per-target comparison is significant by permutation.", "", *_table(sc),
                "## Latent structure against test error", "", "Both the score and the error standardised within "
                "each group, Spearman's rho pooled over the groups, `p` from shuffling the scores within groups. "
                "Within target x depth each group mixes the L0 and L1 runs (the difference between nets is then "
                "part of it); within target x depth x net each group is the 3 seeds of one model.", "",
                *_table(latent[["size", "within", "runs", "groups", "degenerate", "rho", "p"]]),
                "## Looks so far", "", *_table(lk := looks(table, plan))]
        section = _verdicts_miller(pooled, table, lk)
    save_text("\n".join(text), out / "seed_level.md")
    refresh_sections(study, section)
    print(f"-> {out / 'seed_level.md'}")


def _verdict_rows(t: pd.DataFrame, plan_families: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"finding": r.comparison, "size": r.size, "family": r.family, "seeds": r.seeds,
                          "look": r.look, "relative [95%]": _pct(r) if np.isfinite(r.relative) else "",
                          "p": f"{r.p:.3g}", "q": "" if np.isnan(r.q) else f"{r.q:.2g}", "call": r.call,
                          "paper": r.paper, "budget": r.budget} for r in t.itertuples()])


LOOKS = "Every look taken so far (recomputed on the seeds each had where the plan lists them):"


def _verdicts_lee(table: pd.DataFrame, mae: pd.Series, lk: pd.DataFrame) -> str:
    t = table[mae]
    lat = table[~mae]
    rows = _verdict_rows(t)
    lat_rows = pd.DataFrame([{"finding": r.comparison, "size": r.size, "family": r.family, "seeds": r.seeds,
                              "look": r.look, "relative [95%]": f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] (score)",
                              "p": f"{r.p:.3g}", "q": "" if np.isnan(r.q) else f"{r.q:.2g}", "call": r.call,
                              "paper": "", "budget": r.budget} for r in lat.itertuples()])
    cap, _ = stop_rule()
    return "\n".join([BEGIN, "## Verdicts, as planned", "",
                      "From the plan `analyses/lee/plan.yaml`, fixed before the runs it plans: each claim is its own "
                      "family across sizes (`family`), a call uses the planned seeds, the same in both arms, and "
                      "stands only where q < 0.05; any other row is an interim look and no call. Relative: a over b "
                      "minus 1 with Fieller's 95% interval. `budget`: how many runs hit their epoch cap. Every "
                      "curve-grid run did, so those calls hold for that budget; the row `trained to convergence` is "
                      f"the check (the headline pair at 1k, cap {cap}, early stopping that acts). The sensitivity "
                      "of each call, every look so far and the per-seed values are in [seed_level.md](seed_level.md); "
                      "these verdicts supersede the bootstrap ones further down.", "",
                      *_table(pd.concat([rows, lat_rows], ignore_index=True)),
                      "The arm that drops l=1 and l=2 alone is in [arm034.md](arm034.md); Lee et al.'s map "
                      "criterion beside dependence and recovery in [map-criterion](map-criterion/README.md).", "",
                      LOOKS.replace(":", " at the 16k headline:"), "", *_table(lk), END])


def _verdicts_miller(pooled: pd.DataFrame, table: pd.DataFrame, lk: pd.DataFrame) -> str:
    t = table.assign(kind=table["comparison"].str.split(",").str[0])
    counts = []
    for (kind, size), g in t.groupby(["kind", "size"], sort=False):
        held = g[g["call"] == "reproduced"]
        counts.append({"comparison": kind, "family": g["family"].iloc[0], "size": size, "comparisons": len(g),
                       "interval below zero": int((g["verdict"] == "reproduced").sum()),
                       "after correction": len(held),
                       "where (after correction)": ", ".join(
                           f"{r.target} ({r.comparison.split(', ')[1]}, {100 * r.relative:+.0f}%)" for r in held.itertuples())})
    return "\n".join([BEGIN, "## Verdicts, as planned", "",
                      "From the plan `analyses/miller/plan.yaml` (written after the runs, which it says): Miller et "
                      "al.'s claim is an average effect, so the call is one estimate per size pooled over the six "
                      "targets and both depths (the mean log ratio of L1's to L0's test MAE over the 12 strata, each "
                      "from its own 3 seeds), q over the three sizes. Relative: the geometric mean of L1/L0 minus 1, 95% "
                      "over these targets; over targets at large (the strata as a sample) it is wider: "
                      + "; ".join(f"n{r.size} [{100 * r.between_low:+.1f}, {100 * r.between_high:+.1f}]%"
                                  for r in pooled.itertuples()) + ".", "",
                      *_table(_verdict_rows(pooled)),
                      "Secondary, per target and depth (each family as the plan states it; other scopes, the "
                      "per-depth averages and latent structure within target x depth x net in "
                      "[seed_level.md](seed_level.md)):", "", *_table(pd.DataFrame(counts)), LOOKS, "", *_table(lk),
                      END])
