"""Studies II, study 1 (after Lee, Galkin, Miret): do their findings appear as the training set grows?

Runs (or resumes) the U0 learning-curve grid ``analyses/lee/curve.yaml`` (the lee preset at mul 16, L sets
[0], [0,1,2], [0,1,2,3,4], [0,3,4,5,6], nested training sets of 1,000 / 4,000 / 16,000 molecules, 3 seeds,
the same 1,000 validation and 2,000 test molecules), then writes reports/lee/:

- test MAE per size and L set with intervals over molecules and seeds, and paired differences between L
  sets on the same test molecules (their headline: [0,3,4,5,6] against [0,1,2,3,4]);
- utilisation of each order per size under zeroing, mean and resampling at every layer, and true removal;
- probes of seed 0 at every size against 5 untrained initialisations;
- utilisation over training epochs (seed 0, the kept checkpoints);
- latent structure against test error within each size (bootstrap over configurations, and the
  leave-one-configuration-out test), in one experiment report per size;
- pruning and retraining (warm and cold) of any order unused in every seed at the largest size;
- a verdict per finding: reproduced, not reproduced, or not decidable at this scale.

    OMP_NUM_THREADS=1 python analyses/lee/run.py             # run or resume the grid, then report
    OMP_NUM_THREADS=1 python analyses/lee/run.py --report-only  # report on the runs finished so far
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import curves as C  # noqa: E402
from common import ROOT, SEED_LEVEL, command, experiment, provenance, run_times  # noqa: E402

from irrepprobe.experiments import load_grid  # noqa: E402
from irrepprobe.fileio import save_text  # noqa: E402
from irrepprobe.metrics import THRESHOLD  # noqa: E402
from irrepprobe.prune import orders_to_drop  # noqa: E402
from irrepprobe.report.document import Document  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = ROOT / "experiments" / "lee-curve"
REPORTS = ROOT / "reports" / "lee"
SIZES = ("QM9 (all 130,831 molecules shuffled with split seed 0): 16,000 / 1,000 / 2,000 molecules for train / "
         "validation / test; training sets of 1,000, 4,000 and 16,000 are the first molecules of that train split "
         "(nested); epochs capped at 120, 50 and 15 with early stopping after 20 epochs without a better "
         "validation MAE; batch 32, AdamW lr 1e-3 halved on plateaus; lee preset, multiplicity 16 for every "
         "order, 3 layers, 6 A cutoff, 20 Bessel functions; utilisation on 500 test molecules; 3 seeds")
PAIRS = [  # (label, a, b, the sign of a - b the paper predicts, or None for context)
    ("Lee et al.: [0,3,4,5,6] beats [0,1,2,3,4]", "ls=0,3,4,5,6", "ls=0,1,2,3,4", "negative"),
    ("[0,1,2,3,4] against [0,1,2]", "ls=0,1,2,3,4", "ls=0,1,2", None),
    ("[0,1,2] against scalars only [0]", "ls=0,1,2", "ls=0", None),
]
UNUSED_IN = ("ls=0,1,2", "ls=0,1,2,3,4")  # the models in which the paper finds l=1 and l=2 largely unused


def order_verdicts(joint: pd.DataFrame) -> pd.DataFrame:
    """Per size, family and order: 'unused' (every seed's interval below the threshold under every
    intervention and removal), 'used' (every seed's interval above it when zeroed and when removed), or
    'mixed'."""
    rows = []
    for (size, fam, l), g in joint.groupby(["size", "family", "l"]):
        unused = (g["high_max"] < THRESHOLD).all()
        used = (g[g["intervention"].isin(["zero", "removed"])]["low_min"] > THRESHOLD).all()
        per_seed = dict(zip(g["intervention"], g["per_seed"]))
        rows.append({"size": size, "family": fam, "l": l, "seeds": int(g["seeds"].min()),
                     "verdict": "unused" if unused else "used" if used else "mixed",
                     "zeroed": per_seed.get("zero", ""), "resampled": per_seed.get("resample", ""),
                     "removed": per_seed.get("removed", "")})
    return pd.DataFrame(rows)


def joint_table(util: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    meta = runs.drop_duplicates("config")[["config", "size", "family"]]
    return C.joint_utilisation(util).merge(meta, on="config")


def probe_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Seed 0 of every configuration: a full report with probes against 5 untrained initialisations
    (made once, kept under reports/lee/models/); per order, how the l > 0 blocks' probes compare."""
    from irrepprobe.capture import load_capture
    from irrepprobe.metrics import hidden_points
    from irrepprobe.study import make_report

    rows = []
    for r in runs[runs["seed"] == 0].itertuples():
        dest = REPORTS / "models" / r.config
        if not (dest / "tables" / "probes.csv").exists():
            print(f"report for {r.run}", flush=True)
            cap = load_capture(RUNS / r.run / "capture")
            make_report(cap, out=dest, map_points=1000, map_layers=hidden_points(cap)[-1:], device="cpu",
                        utilisation=pd.read_csv(RUNS / r.run / "metrics" / "utilisation.csv"), command=command(),
                        log=lambda *a: None)
        scal = pd.read_csv(dest / "tables" / "probes.csv")
        eq_csv = dest / "tables" / "probes_equivariant.csv"
        eq = pd.read_csv(eq_csv) if eq_csv.stat().st_size > 1 else pd.DataFrame()
        for l, g in scal[scal["l"] > 0].groupby("l"):
            row = {"size": r.size, "family": r.family, "l": int(l),
                   "blocks": g[["point", "block"]].drop_duplicates().shape[0],
                   "scalar targets above every init": f"{int(g['above_controls'].sum())}/{len(g)}",
                   "mean selectivity (R2 - untrained)": round(float(g["selectivity"].mean()), 3)}
            d = eq[(eq["l"] == l) & eq["target"].astype(str).str.startswith("dipole")] if len(eq) else eq
            if len(d):
                best = d.loc[d["selectivity"].idxmax()]
                row.update({"dipole: best block": f"{best['point']} {best['block']}", "dipole R2": round(best["r2"], 3),
                            "untrained mean (sd)": f"{best['r2_untrained']:.3f} ({best['r2_untrained_sd']:.3f})",
                            "dipole above every init": f"{int(d['above_controls'].sum())}/{len(d)} blocks"})
            rows.append(row)
    return pd.DataFrame(rows)


def prune_largest(runs: pd.DataFrame, util: pd.DataFrame) -> pd.DataFrame:
    """At the largest size with every seed finished: the orders unused in every seed, and (if any) the
    pruned model retrained cold and warm for 3 seeds with `irrepprobe.prune`."""
    from irrepprobe.prune.run import prune

    size = runs["size"].max()
    rows = []
    for fam, g in runs[runs["size"] == size].groupby("family"):
        per_seed = [set(orders_to_drop(util[util["run"] == run], THRESHOLD)) for run in g["run"]]
        drop = sorted(set.intersection(*per_seed)) if per_seed else []
        row = {"size": size, "family": fam, "seeds": len(g), "unused in every seed": str(drop),
               "unused per seed": "; ".join(str(sorted(s)) for s in per_seed)}
        if drop and len(g) >= 3:
            res = prune(RUNS / g[g["seed"] == 0]["run"].iloc[0] / "best.pt", RUNS / "pruned" / fam, drop=drop,
                        seeds=3, warm=True, molecules=500, log=lambda *a: None)
            row["retrained test MAE"] = "; ".join(f"{v}: {m:.4f}" for v, m in
                                                 res["runs"].groupby("variant")["test_mae"].mean().items())
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    t0 = time.time()
    cmd = command()
    grid = load_grid(HERE / "curve.yaml")
    res = experiment(grid, RUNS)
    doc = Document("Study 1: which orders does a U0 model use, as the training set grows? (after Lee, Galkin, Miret)")
    doc.text("Produced by `analyses/lee/run.py` with the grid `analyses/lee/curve.yaml`; the exact command and "
             "the sizes are at the end. Every number below comes from the runs finished when it ran "
             f"({len(res['runs'])} of {len(grid.runs)}).")
    doc.text(SEED_LEVEL)
    if res["runs"].empty:
        save_text(doc.markdown(REPORTS), REPORTS / "README.md")
        return
    runs = C.with_size(res["runs"])
    util = res["utilisation"].merge(runs[["run", "size", "family"]], on="run")
    errors = C.abs_errors(RUNS, runs)

    table = C.curve_table(runs, errors, RUNS, ["family"])
    paired = C.paired_table(runs, errors, PAIRS, ["size"])
    joint = joint_table(util, runs)
    orders = order_verdicts(joint)

    # findings and their verdicts
    verdicts = []
    for r in paired[paired["verdict"] != ""].itertuples():
        verdicts.append({"finding": r.comparison, "size": r.size, "evidence": f"{r.diff:+.4f} eV [{r.ci_low:+.4f}, "
                         f"{r.ci_high:+.4f}] ({100 * r.relative:+.1f}%)", "verdict": r.verdict})
    for size, g in orders[orders["family"].isin(UNUSED_IN) & orders["l"].isin([1, 2])].groupby("size"):
        v = set(g["verdict"])
        verdicts.append({"finding": "Lee et al.: l=1 and l=2 largely unused for U0", "size": size,
                         "evidence": "; ".join(f"{r.family} l={r.l}: {r.verdict}" for r in g.itertuples()),
                         "verdict": "reproduced" if v == {"unused"} else "not reproduced" if v == {"used"}
                         else "not decidable at this scale"})
    verdicts = pd.DataFrame(verdicts)

    doc.heading("Verdicts")
    doc.text("Reproduced: the interval lies wholly on the side the paper predicts; not reproduced: wholly on the "
             "other side; not decidable at this scale: it covers zero (or, for utilisation, the seeds disagree or "
             f"an interval straddles the {THRESHOLD:.0%} threshold).")
    doc.table(verdicts, C.save(verdicts, REPORTS, "verdicts"))
    doc.heading("Test error against training size")
    doc.text("Test MAE (eV) on the same 2,000 test molecules, mean over seeds and molecules, with a 95% bootstrap "
             "interval that resamples both molecules and seeds. `epochs`: per seed; `stopped_early`: seeds that early "
             "stopping ended before the cap (the others hit the cap, so they may not have converged).")
    doc.table(table.round(4), C.save(table, REPORTS, "learning_curve"))
    doc.figure(C.curve_figure(table, "family", REPORTS, "learning_curve", "U0 test MAE against training size "
                              "(95% intervals over molecules and seeds)", "test MAE (eV)"),
               "Test MAE against training size per L set")
    doc.heading("Paired differences between L sets")
    doc.text("a minus b in test MAE on the same molecules (negative: a is better); the interval draws molecules "
             "once for both (the pairing) and seeds independently for each.")
    cols = ["size", "comparison", "mae_a", "mae_b", "diff", "ci_low", "ci_high", "relative", "rel_low", "rel_high", "p",
            "verdict"]
    doc.table(paired[cols].round(4), C.save(paired, REPORTS, "paired_differences"))
    doc.heading("Which orders are used, per training size")
    doc.text("Scale-free utilisation of each order (the share of what the model learned beyond the composition "
             "baseline that the intervention takes away) when it is zeroed or replaced by another molecule's "
             "value at every layer at once, and when it is truly removed (its spherical harmonics and every path "
             "through it switched off), per seed with its 95% interval; above 100%, the intervention leaves the "
             "prediction worse than the composition baseline. Mean ablation is zeroing here: the only "
             "rotation-invariant mean of an l>0 feature is zero. Unused: every seed's "
             f"interval below {THRESHOLD:.0%} under zeroing, mean, resampling and removal; used: every seed's "
             "interval above it when zeroed and when removed.")
    doc.table(orders, C.save(orders, REPORTS, "orders_per_size"))
    doc.figure(C.utilisation_figure(joint, REPORTS, "utilisation_vs_size", "joint zeroing of each order at "
                                    "every layer: mean over seeds, band = seeds' range; dotted: 5%"),
               "Utilisation of each order against training size")
    C.save(joint, REPORTS, "utilisation_joint")

    C.dynamics_section(doc, runs[(runs["seed"] == 0) & (runs["family"] != "ls=0")], RUNS, REPORTS, "seed 0")

    probes = probe_summary(runs)
    if len(probes):
        doc.heading("Probes against untrained initialisations (seed 0)")
        doc.text("Ridge probes of 16 QM9 scalars beyond composition from each l>0 block's invariants, and an "
                 "equivariant probe of the dipole vector from each 1o block, each against the same probe on the "
                 "model's own initialisation and 4 other untrained initialisations. Full reports under `models/`.")
        doc.table(probes, C.save(probes, REPORTS, "probes"))

    doc.heading("Latent structure against test error, within each size")
    corr = C.latent_by_size(res, runs, REPORTS, "Lee et al. U0 learning curve", cmd)
    doc.text("Latent structure: kNN R2 of U0 beyond composition, mean over the stream blocks every configuration "
             "has; rank correlation with test error across that size's runs, bootstrap over configurations.")
    doc.table(corr, C.save(corr, REPORTS, "latent_vs_error"))

    pruned = prune_largest(runs, res["utilisation"])
    doc.heading("Pruning at the largest size")
    if "retrained test MAE" in pruned:
        doc.text("Orders unused in every seed at the largest size, dropped and retrained for 3 seeds from scratch "
                 "(cold) and from the trained weights (warm) with `irrepprobe.prune`; their test MAE per variant.")
    else:
        doc.text(f"No order is unused (interval below {THRESHOLD:.0%} under every intervention) in every seed at "
                 "the largest size, so nothing is pruned and retrained; per seed, the orders that would be:")
    doc.table(pruned, C.save(pruned, REPORTS, "pruning"))
    times = run_times(RUNS, [r.name for r in grid.runs])
    made = provenance(cmd, times, time.time() - t0, SIZES, grid.executor.get("jobs", 1))
    save_text(doc.markdown(REPORTS) + "\n" + made, REPORTS / "README.md")
    import seed_level  # the seed-level statistics from the runs.csv tables just written

    seed_level.main()
    print(f"-> {REPORTS / 'README.md'}")


if __name__ == "__main__":
    main()
