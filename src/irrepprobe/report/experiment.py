"""The experiment report: test error per configuration (mean and spread over seeds), utilisation and
latent structure per block side by side, and the rank correlation of latent structure with test error
across all runs, with its bootstrap interval, its scatter plot and a plain statement of what it shows."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..fileio import save_csv
from ..metrics.correlation import spearman_ci, verdict
from . import figures as F
from .document import Document

LATENT = "knn_r2_target"
LATENT_LABEL = "latent structure: kNN R2 of the target beyond composition (mean over hidden blocks)"


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: seeds, parameters, test error and latent structure, mean and std."""
    return (runs.assign(ls=runs["ls"].astype(str))
            .groupby("config", sort=False)
            .agg(target=("target", "first"), ls=("ls", "first"), layers=("layers", "first"),
                 params=("params", "first"), seeds=("seed", "size"),
                 test_mae_mean=("test_mae", "mean"), test_mae_std=("test_mae", "std"),
                 relative_mae_mean=("test_mae_relative", "mean"),
                 latent_mean=(LATENT, "mean"), latent_std=(LATENT, "std"),
                 unused_blocks=("unused_blocks", "mean"), blocks=("blocks", "first"))
            .reset_index())


def correlations(runs: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Spearman(latent structure, test error) over all runs (relative MAE, so that targets pool) and,
    where the grid has several targets, within each target (MAE in its own units)."""
    rows = [{"runs": "all", "error": "test_mae_relative", **spearman_ci(runs[LATENT], runs["test_mae_relative"],
                                                                       n_boot)}]
    if runs["target"].nunique() > 1:
        for target, g in runs.groupby("target", sort=False):
            rows.append({"runs": f"target {target}", "error": "test_mae", **spearman_ci(g[LATENT], g["test_mae"],
                                                                                        n_boot)})
    df = pd.DataFrame(rows)
    df["verdict"] = [verdict(r) for r in df.to_dict("records")]
    return df


def _panels(table: pd.DataFrame, value: str, title: str, unit: str, cmap: str, out: Path, name: str,
            vmin=0.0, vmax=None):
    configs = list(dict.fromkeys(table["config"]))
    cols = min(4, len(configs))
    rows = -(-len(configs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 2.9 * rows), squeeze=False)
    top = vmax if vmax is not None else max(1.0, float(np.nanmax(table[value])) if len(table) else 1.0)
    for ax, config in zip(axes.flat, configs):
        g = table[table["config"] == config]
        F._heat(ax, F.grid(g, value, list(dict.fromkeys(g["point"]))), config, unit, cmap, vmin, top)
        ax.set_xlabel("")
    for ax in list(axes.flat)[len(configs):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return F.save(fig, out / "figures", name)


def _scatter(runs: pd.DataFrame, corr: pd.DataFrame, out: Path):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for config, g in runs.groupby("config", sort=False):
        ax.scatter(g[LATENT], g["test_mae_relative"], s=22, label=config)
    r = corr.iloc[0]
    ax.set_title(f"all runs: Spearman {r['rho']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], n={int(r['n'])}",
                 fontsize=10)
    ax.set_xlabel(LATENT_LABEL, fontsize=8)
    ax.set_ylabel("test MAE / MAE of predicting the mean")
    if runs["config"].nunique() <= 12:
        ax.legend(fontsize=7)
    return F.save(fig, out / "figures", "error_vs_latent")


def _errors(runs: pd.DataFrame, out: Path):
    configs = list(dict.fromkeys(runs["config"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(configs) + 2), 4))
    for i, c in enumerate(configs):
        v = runs.loc[runs["config"] == c, "test_mae_relative"]
        ax.scatter(np.full(len(v), i), v, s=18, color="C0")
        ax.errorbar(i + 0.18, v.mean(), yerr=v.std() if len(v) > 1 else 0, fmt="o", color="C3", ms=4)
    ax.set_xticks(range(len(configs)), configs, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test MAE / MAE of predicting the mean")
    ax.set_title("test error per run (blue) and mean +- std over seeds (red)", fontsize=10)
    return F.save(fig, out / "figures", "test_error")


def experiment_report(res: dict, out, title: str, command: str | None = None, intro: str | None = None,
                      n_boot: int = 2000) -> Path:
    """Write ``out/report.md`` and ``out/report.html`` (figures and CSV tables beside them)."""
    out = Path(out)
    runs, util, knn = res["runs"], res["utilisation"], res["knn"]
    doc = Document(f"irrepprobe experiment: {title}")
    if intro:
        doc.text(intro)
    counts = res.get("counts", {})
    doc.text(f"{len(runs)} runs finished" + (f" ({counts.get('done', 0)} before this invocation, "
                                             f"{counts.get('partial', 0)} resumed, {counts.get('new', 0)} new)"
                                             if counts else "") + ".")
    if res.get("failures"):
        doc.heading("Failed runs")
        doc.bullets(res["failures"])
    if runs.empty:
        doc.text("No finished runs yet.")
        doc.write(out)
        return out / "report.md"

    summary = summarise(runs)
    save_csv(runs, out / "tables" / "runs.csv")
    save_csv(summary, out / "tables" / "summary.csv")
    doc.heading("Test error per configuration")
    doc.text("Mean and standard deviation over seeds; relative MAE is the test MAE over that of predicting the "
             "test mean, so that targets compare. std is empty for one seed.")
    doc.table(summary, "tables/summary.csv")
    doc.figure(_errors(runs, out), "Test error per run and per configuration")

    hidden = util[util["point"] != "all"]
    mean_util = hidden.groupby(["config", "point", "block"], sort=False)["utilisation"].mean().reset_index()
    save_csv(mean_util, out / "tables" / "utilisation_mean.csv")
    doc.heading("Utilisation per block")
    doc.text("Ablation utilisation (relative increase of the MAE when the block is zeroed for the rest of the "
             "forward pass), mean over seeds. The joint rows (every layer's order l zeroed at once) are in "
             "tables/utilisation_joint.csv.")
    save_csv(util[util["point"] == "all"].groupby(["config", "block"], sort=False)["utilisation"]
             .agg(["mean", "std", "size"]).reset_index(), out / "tables" / "utilisation_joint.csv")
    doc.figure(_panels(mean_util, "utilisation", "ablation utilisation, mean over seeds",
                       "relative MAE increase", "magma_r", out, "utilisation"), "Utilisation per block, side by side")

    target = knn[knn["target"] != "squared error"]
    mean_knn = target.groupby(["config", "point", "block"], sort=False)["knn_r2"].mean().reset_index()
    save_csv(mean_knn, out / "tables" / "latent_mean.csv")
    doc.heading("Latent structure per block")
    doc.text("Out-of-fold R2 of a 10-nearest-neighbour regressor of the target (beyond composition) on each "
             "block's invariants, mean over seeds: high when molecules with similar targets sit together.")
    doc.figure(_panels(mean_knn, "knn_r2", "kNN R2 of the target, mean over seeds", "out-of-fold R2",
                       "viridis", out, "latent", vmin=0.0, vmax=1.0), "Latent structure per block, side by side")

    corr = correlations(runs, n_boot)
    save_csv(corr, out / "tables" / "correlation.csv")
    doc.heading("Latent structure against test error")
    doc.text("Each run's latent structure (kNN R2 of the target, mean over its hidden blocks) against its test "
             "error, Spearman rank correlation with a percentile bootstrap interval over runs (resampled "
             f"{n_boot} times). Negative rho: more structured latents, lower error.")
    doc.table(corr[["runs", "error", "n", "rho", "ci_low", "ci_high", "p"]], "tables/correlation.csv")
    doc.bullets([f"{r['runs']}: {r['verdict']}" for r in corr.to_dict("records")])
    doc.figure(_scatter(runs, corr, out), "Test error against latent structure, one point per run")

    doc.heading("Runs")
    doc.table(runs.drop(columns=["run"]).round(4), "tables/runs.csv")
    if command:
        doc.heading("How this report was made")
        doc.text(f"Command: `{command}`")
    doc.write(out)
    return out / "report.md"
