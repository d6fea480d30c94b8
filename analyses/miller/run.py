"""Study 2 (Miller, Geiger, Smidt, Noe): do angular features help?

Runs (or resumes) the L0Net / L1Net grid (depth 2 and depth 3, six targets, three seeds) with the
experiment runner and writes the experiment report and the study summary reports/miller/README.md:
the relative error reduction of L1 over L0 per target and on average, and where depth +1 helps.

    OMP_NUM_THREADS=1 python analyses/miller/run.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, command, experiment, provenance, run_times  # noqa: E402

from irrepprobe.experiments import load_grid  # noqa: E402
from irrepprobe.fileio import save_csv, save_text  # noqa: E402
from irrepprobe.report import figures as F  # noqa: E402
from irrepprobe.report.document import Document  # noqa: E402
from irrepprobe.report.experiment import experiment_report  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = ROOT / "experiments" / "miller"
REPORTS = ROOT / "reports" / "miller"
SIZES = ("QM9 subset of 3,000 molecules (2,400 train / 300 validation / 300 test, split seed 0), 15 epochs, "
         "batch 32, Adam lr 1e-3, 5 A cutoff, 10 Bessel functions; L1Net multiplicities {0: 16, 1: 8}, L0Net 26 "
         "channels at depth 2 and 27 at depth 3 (parameter counts in the table)")


def comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Per target and depth: L0 and L1 test MAE (mean ± std over seeds) and the relative reduction
    (MAE_L0 - MAE_L1) / MAE_L0 of the seed means, with the spread of the per-seed reductions."""
    runs = runs.assign(net=runs["config"].str.split("-").str[0], depth=runs["layers"])
    rows = []
    for (target, depth), g in runs.groupby(["target", "depth"], sort=False):
        l0 = g[g["net"] == "L0"].set_index("seed")["test_mae"]
        l1 = g[g["net"] == "L1"].set_index("seed")["test_mae"]
        seeds = l0.index.intersection(l1.index)  # only seeds both nets finished
        l0, l1 = l0[seeds], l1[seeds]
        paired = (l0 - l1) / l0
        rows.append({"target": target, "depth": depth,
                     "params L0": int(g[g["net"] == "L0"]["params"].iloc[0]),
                     "params L1": int(g[g["net"] == "L1"]["params"].iloc[0]),
                     "seeds": len(seeds),
                     "MAE L0": l0.mean(), "std L0": l0.std(), "MAE L1": l1.mean(), "std L1": l1.std(),
                     "reduction": (l0.mean() - l1.mean()) / l0.mean(),
                     "reduction min": paired.min(), "reduction max": paired.max(),
                     "L1 better in seeds": f"{int((paired > 0).sum())}/{len(paired)}"})
    return pd.DataFrame(rows)


def depth_gain(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.assign(net=runs["config"].str.split("-").str[0])
    mean = runs.groupby(["target", "net", "layers"], sort=False)["test_mae"].mean().unstack("layers")
    d = sorted(mean.columns)
    out = pd.DataFrame({f"MAE depth {d[0]}": mean[d[0]], f"MAE depth {d[-1]}": mean[d[-1]],
                        "depth +1 reduction": (mean[d[0]] - mean[d[-1]]) / mean[d[0]]})
    return out.reset_index()


def plot(comp: pd.DataFrame, out: Path) -> Path:
    targets = list(dict.fromkeys(comp["target"]))
    depths = sorted(comp["depth"].unique())
    fig, ax = plt.subplots(figsize=(7, 4))
    w = 0.8 / len(depths)
    for k, depth in enumerate(depths):
        g = comp[comp["depth"] == depth].set_index("target").reindex(targets)
        x = np.arange(len(targets)) + k * w
        ax.bar(x, 100 * g["reduction"], w, label=f"depth {depth}")
        ax.errorbar(x, 100 * g["reduction"], yerr=[(100 * (g["reduction"] - g["reduction min"])).clip(lower=0),
                                                  (100 * (g["reduction max"] - g["reduction"])).clip(lower=0)],
                    fmt="none", color="black", lw=1)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(targets)) + w * (len(depths) - 1) / 2, targets)
    ax.set_ylabel("L1 over L0: relative test MAE reduction (%)")
    ax.set_title("bars: reduction of seed means; whiskers: range of per-seed reductions", fontsize=9)
    ax.legend()
    return F.save(fig, out / "figures", "l1_vs_l0")


def main() -> None:
    t0 = time.time()
    cmd = command()
    grid = load_grid(HERE / "grid.yaml")
    res = experiment(grid, RUNS)
    experiment_report(res, REPORTS / "experiment", "Miller et al. study 2: L0Net vs L1Net", command=cmd)
    comp, gain = comparison(res["runs"]), depth_gain(res["runs"])
    save_csv(comp, REPORTS / "tables" / "l1_vs_l0.csv")
    save_csv(gain, REPORTS / "tables" / "depth.csv")
    avg = comp.groupby("depth")["reduction"].mean()
    doc = Document("Study 2: do angular features help? (after Miller, Geiger, Smidt, Noé)")
    doc.text("Produced by `analyses/miller/run.py` with the grid `analyses/miller/grid.yaml`. The experiment "
             "report (utilisation, latent structure, correlation with test error) is [here](experiment/report.md).")
    doc.heading("L1Net against L0Net at matched depth")
    from irrepprobe.data.targets import get_target
    units = ", ".join(f"{t} {get_target(t).unit}" for t in dict.fromkeys(comp["target"]))
    doc.text(f"Test MAE in the target's units ({units}), mean and std over seeds. "
             "Reduction: (MAE L0 - MAE L1) / MAE L0 of the seed means; min and max over per-seed pairs.")
    doc.table(comp, "tables/l1_vs_l0.csv")
    doc.bullets([f"depth {d}: mean reduction over the {len(comp[comp['depth'] == d])} targets {100 * v:+.1f}%"
                 for d, v in avg.items()])
    doc.figure(plot(comp, REPORTS), "Relative error reduction of L1Net over L0Net per target")
    doc.heading("Where does depth +1 help?")
    doc.table(gain, "tables/depth.csv")
    doc.heading("Latent structure against test error")
    corr = pd.read_csv(REPORTS / "experiment" / "tables" / "correlation.csv")
    loco = pd.read_csv(REPORTS / "experiment" / "tables" / "leave_one_config_out.csv")
    from irrepprobe.metrics.correlation import loco_verdict
    doc.text("Latent structure: kNN R2 of the target beyond composition, mean over the same stream blocks in "
             "every configuration. Spearman correlations within each target (headline: both sides standardised "
             "per target, then pooled), intervals from a bootstrap over configurations; the pooled row is what "
             "earlier reports gave, and differences between targets alone can make it.")
    doc.table(corr[["runs", "n", "groups", "rho", "ci_low", "ci_high"]].round(3))
    doc.bullets([f"{r['runs']}: {r['verdict']}" for r in corr.to_dict("records")] + [loco_verdict(loco)])
    times = run_times(RUNS, [r.name for r in grid.runs])
    save_text(doc.markdown(REPORTS) + "\n" + provenance(cmd, times, time.time() - t0, SIZES),
              REPORTS / "README.md")
    print(f"-> {REPORTS / 'README.md'}")


if __name__ == "__main__":
    main()
