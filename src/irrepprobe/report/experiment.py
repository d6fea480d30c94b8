"""The experiment report: test error per configuration (mean and spread over seeds), utilisation and
latent structure per block side by side, and the rank correlation of latent structure with test error
across all runs, with its bootstrap interval, its scatter plot and a plain statement of what it shows."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..fileio import save_csv
from ..metrics.correlation import latent_vs_error, leave_one_config_out, loco_verdict, within
from . import figures as F
from .document import Document

LATENT = "latent"
LATENT_LABEL = "latent structure: kNN R2 of the target beyond composition (mean over the fixed hidden blocks)"


def fixed_blocks(util: pd.DataFrame, knn: pd.DataFrame) -> list[tuple[str, str]]:
    """The hidden blocks every run has and every run can reach: the streams leaving each layer
    (not the embedding, not a layer's own update), so that every configuration is scored on the
    same blocks and none that cannot matter by construction."""
    runs = knn["run"].nunique()
    k = knn[knn["role"] == "stream"] if "role" in knn and (knn["role"] == "stream").any() else knn
    have = k.drop_duplicates(["run", "point", "block"]).groupby(["point", "block"]).size()
    reach = (util[util["point"] != "all"].drop_duplicates(["run", "point", "block"])
             .groupby(["point", "block"])["reachable"].agg(["all", "size"]))
    keep = [key for key, n in have.items() if n == runs and key in reach.index
            and reach.loc[key, "all"] and reach.loc[key, "size"] == runs]
    return keep


def run_latent(knn: pd.DataFrame, blocks: list[tuple[str, str]]) -> pd.DataFrame:
    """Per run: the mean kNN R2 of the target over ``blocks`` (``latent``) and the standard deviation
    of that mean over the kNN subsamples (``latent_sd``, the score's own sampling spread)."""
    t = knn[(knn["target"] != "squared error")]
    t = t[pd.MultiIndex.from_frame(t[["point", "block"]]).isin(blocks)]
    if "repeat" not in t:
        t = t.assign(repeat=0)
    per = t.groupby(["run", "repeat"])["knn_r2"].mean()
    return per.groupby("run").agg(latent="mean", latent_sd="std").reset_index()


def seed_spread(util: pd.DataFrame) -> pd.DataFrame:
    """Per configuration with at least two finished seeds, :func:`irrepprobe.metrics.across_seeds` of its
    runs' utilisation tables (zero ablation, every block and the joint order rows)."""
    from ..metrics.seeds import across_seeds

    out = []
    zero = util[util["intervention"] == "zero"] if len(util) else util
    for config, g in zero.groupby("config", sort=False) if len(zero) else []:
        runs = [d.drop(columns=["config", "run", "seed"]) for _, d in g.groupby("run", sort=True)]
        if len(runs) < 2:
            continue
        names = [f"seed {int(d['seed'].iloc[0])}" for _, d in g.groupby("run", sort=True)]
        out.append(across_seeds(runs, names).assign(config=config))
    if not out:
        return pd.DataFrame()
    df = pd.concat(out, ignore_index=True)
    return df[["config"] + [c for c in df.columns if c != "config"]]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: seeds, parameters, test error and latent structure, mean and std."""
    return (runs.assign(ls=runs["ls"].astype(str))
            .groupby("config", sort=False)
            .agg(target=("target", "first"), ls=("ls", "first"), layers=("layers", "first"),
                 params=("params", "first"), seeds=("seed", "size"),
                 test_mae_mean=("test_mae", "mean"), test_mae_std=("test_mae", "std"),
                 relative_mae_mean=("test_mae_relative", "mean"),
                 latent_mean=(LATENT, "mean"), latent_std=(LATENT, "std"), latent_sampling_sd=("latent_sd", "mean"),
                 unused_blocks=("unused_blocks", "mean"), blocks=("blocks", "first"))
            .reset_index())


def correlations(runs: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Spearman(latent structure, test error) within targets, per target and pooled (see
    :func:`irrepprobe.metrics.correlation.latent_vs_error`), intervals over configurations."""
    return latent_vs_error(runs, LATENT, "test_mae", n_boot)


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
    """Within-target standardised error against latent structure, one point per run with the
    latent score's sampling spread as a horizontal bar."""
    several = runs["target"].nunique() > 1
    x = within(runs[LATENT], runs["target"]) if several else runs[LATENT]
    y = within(runs["test_mae"], runs["target"]) if several else runs["test_mae"]
    scale = runs.groupby("target")[LATENT].transform("std") if several else pd.Series(1.0, runs.index)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for config, g in runs.groupby("config", sort=False):
        sd = g["latent_sd"] / scale[g.index]
        ax.errorbar(x[g.index], y[g.index], xerr=sd.fillna(0), fmt="o", ms=4, capsize=0, label=config)
    r = corr.iloc[0]
    ax.set_title(f"{r['runs']}: Spearman {r['rho']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], "
                 f"n={int(r['n'])} runs, {int(r['groups'])} configurations", fontsize=9)
    ax.set_xlabel(LATENT_LABEL + (" (standardised within target)" if several else ""), fontsize=8)
    ax.set_ylabel("test MAE (standardised within target)" if several else f"test MAE ({runs['target'].iloc[0]})")
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

    blocks = fixed_blocks(util, knn)
    runs = runs.drop(columns=[c for c in (LATENT, "latent_sd") if c in runs]).merge(
        run_latent(knn, blocks), on="run", how="left")
    summary = summarise(runs)
    save_csv(runs, out / "tables" / "runs.csv")
    save_csv(summary, out / "tables" / "summary.csv")
    doc.heading("Test error per configuration")
    doc.text("Mean and standard deviation over seeds; relative MAE is the test MAE over that of predicting the "
             "test mean, so that targets compare. std is empty for one seed. Unused blocks: reachable blocks "
             "whose scale-free utilisation interval lies below the threshold under every intervention, mean "
             "count per run out of `blocks` (blocks unreachable by construction are in neither).")
    doc.table(summary, "tables/summary.csv")
    doc.figure(_errors(runs, out), "Test error per run and per configuration")

    hidden = util[(util["point"] != "all") & (util["intervention"] == "zero")]
    mean_util = (hidden.assign(percent=100 * hidden["scale_free"])
                 .groupby(["config", "point", "block"], sort=False)["percent"].mean().reset_index())
    save_csv(mean_util, out / "tables" / "utilisation_mean.csv")
    doc.heading("Utilisation per block")
    doc.text("Scale-free ablation utilisation (the share of what the model learned beyond the composition "
             "baseline that zeroing the block takes away, in %), mean over seeds; every intervention with its "
             "interval per run is in each run's metrics/utilisation.csv. The joint rows (one order replaced at "
             "every layer at once, and the order truly removed) are in tables/utilisation_joint.csv.")
    joint = util[util["point"] == "all"]
    save_csv(joint.groupby(["config", "block", "intervention"], sort=False)["scale_free"]
             .agg(["mean", "std", "size"]).reset_index(), out / "tables" / "utilisation_joint.csv")
    doc.figure(_panels(mean_util, "percent", "scale-free utilisation (zero ablation), mean over seeds",
                       "% of what was learned beyond composition", "magma_r", out, "utilisation", vmax=100.0),
               "Utilisation per block, side by side")

    spread = seed_spread(util)
    if len(spread):
        save_csv(spread, out / "tables" / "seeds.csv")
        ratio = spread["spread_ratio"].replace([np.inf, -np.inf], np.nan).dropna()
        doc.heading("Across seeds")
        doc.text("Each run's intervals resample test molecules within that one trained model. Per configuration "
                 "with several seeds, each order replaced at every layer at once (zero ablation): the seeds' "
                 "scale-free utilisation, their mean with a Student t interval over seeds, their standard deviation "
                 "and its ratio to the first seed's within-model standard error (`spread_ratio`)"
                 + (f"; median ratio {ratio.median():.1f}, largest {ratio.max():.1f}" if len(ratio) else "") + ". "
                 "Every block's row is in tables/seeds.csv.")
        joint_spread = spread[spread["point"] == "all"].drop(columns=["point", "intervention"], errors="ignore")
        doc.table(joint_spread.round(4), "tables/seeds.csv")

    target = knn[knn["target"] != "squared error"]
    mean_knn = target.groupby(["config", "point", "block"], sort=False)["knn_r2"].mean().reset_index()
    save_csv(mean_knn, out / "tables" / "latent_mean.csv")
    doc.heading("Latent structure per block")
    doc.text("Out-of-fold R2 of a 10-nearest-neighbour regressor of the target (beyond composition) on each "
             "block's invariants, mean over seeds and over the kNN subsamples (5 random 80% subsamples of the "
             "test molecules): high when molecules with similar targets sit together.")
    doc.figure(_panels(mean_knn, "knn_r2", "kNN R2 of the target, mean over seeds", "out-of-fold R2",
                       "viridis", out, "latent", vmin=0.0, vmax=1.0), "Latent structure per block, side by side")

    corr = correlations(runs, n_boot)
    loco = leave_one_config_out(runs, LATENT)
    save_csv(corr, out / "tables" / "correlation.csv")
    save_csv(loco, out / "tables" / "leave_one_config_out.csv")
    doc.heading("Latent structure against test error")
    doc.text("Each run's latent structure is the kNN R2 of the target averaged over the same blocks in every "
             "configuration: " + (", ".join(f"{p} {b}" for p, b in blocks) or "none (no block is common to "
             "every run)") + " (the streams every run has and can reach; the embedding, layers' own updates and "
             "blocks unreachable by construction are left out). Its sampling spread (sd over the kNN subsamples) "
             f"is `latent_sd` in tables/runs.csv, mean {runs['latent_sd'].mean():.3f} against a spread of "
             f"{runs[LATENT].std():.3f} between runs. Spearman rank correlation with test error, with a "
             f"percentile bootstrap interval over configurations ({n_boot} resamples; a configuration's seeds "
             "are drawn together, since they are not independent evidence). Correlations are taken within each "
             "target (both sides standardised per target and pooled): across targets, differences of unit and "
             "difficulty alone can make a correlation. Negative rho: more structured latents, lower error.")
    doc.table(corr[["runs", "n", "groups", "rho", "ci_low", "ci_high", "p"]], "tables/correlation.csv")
    doc.bullets([f"{r['runs']}: {r['verdict']}" for r in corr.to_dict("records")] + [loco_verdict(loco)])
    if len(loco):
        doc.table(loco.round(3), "tables/leave_one_config_out.csv")
    doc.figure(_scatter(runs, corr, out), "Test error against latent structure, one point per run")

    doc.heading("Runs")
    doc.table(runs.drop(columns=["run"]).round(4), "tables/runs.csv")
    if command:
        doc.heading("How this report was made")
        doc.text(f"Command: `{command}`")
    doc.write(out)
    return out / "report.md"
