"""The prune comparison reports: test error and latent structure of the full and pruned models (ours,
retrained), and the comparison table of a model of another family pruned by surgery."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ..fileio import save_csv
from . import figures as F
from .document import Document

if TYPE_CHECKING:
    from ..adapters import Loaded


def prune_report(result: dict, out, title: str, threshold: float, command: str | None = None) -> Path:
    out = Path(out)
    runs, util = result["runs"], result["utilisation"]
    save_csv(runs, out / "tables" / "runs.csv")
    save_csv(util, out / "tables" / "utilisation.csv")
    doc = Document(f"irrepprobe prune: {title}")
    drop = result["drop"]
    doc.heading("Orders dropped")
    doc.text(("Dropped " + ", ".join(f"l={l}" for l in drop) + f"; pruned config ls={result['config'].model.ls}.")
             if drop else f"Nothing to drop: every order l > 0 is used (the interval of its scale-free "
                          f"utilisation reaches {threshold:g} under some intervention, somewhere or jointly).")
    doc.heading("Runs")
    doc.table(runs, "tables/runs.csv")
    if drop:
        summary = runs.groupby("variant").agg(runs=("seed", "size"), ls=("ls", "first"), params=("params", "first"),
                                              test_mae_mean=("test_mae", "mean"), test_mae_std=("test_mae", "std"),
                                              knn_r2_target=("knn_r2_target", "mean")).reset_index()
        doc.text("Mean and spread over seeds (std is empty for a single seed; one seed says little).")
        doc.table(summary)
        save_csv(summary, out / "tables" / "summary.csv")
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for variant, g in runs.groupby("variant"):
            ax.scatter(g["knn_r2_target"], g["test_mae"], label=f"{variant} {g['ls'].iloc[0]}")
        ax.set_xlabel("latent structure: kNN R2 of the target (mean over blocks)")
        ax.set_ylabel("test MAE")
        ax.legend()
        ax.set_title(title, fontsize=9)
        doc.figure(F.save(fig, out / "figures", "error_vs_structure"), "Test MAE against latent structure per run")
    per = util[util["point"] != "all"]
    if "intervention" in per:  # one intervention per cell: zero ablation, scale-free, in percent
        per = per[per["intervention"] == "zero"].assign(percent=lambda d: 100 * d["scale_free"])
    value = "percent" if "percent" in per else "utilisation"
    unit = ("% of what the model learned beyond composition (zero ablation)" if value == "percent"
            else "relative increase of test MAE when zeroed")
    for (variant, seed), g in per.groupby(["variant", "seed"], sort=False):
        grid = F.grid(g, value, list(dict.fromkeys(g["point"])))
        fig, ax = plt.subplots(figsize=(6, 0.55 * len(grid) + 2.4))
        F._heat(ax, grid, f"{variant} seed {seed}: ablation utilisation", unit,
                "magma_r", 0, max(1.0, float(np.nanmax(grid.to_numpy(dtype=float)))))
        doc.figure(F.save(fig, out / "figures", f"utilisation_{variant}_seed{seed}"),
                   f"Ablation utilisation, {variant} model, seed {seed}")
    if command:
        doc.heading("How this report was made")
        doc.text(f"Command: `{command}`")
    doc.write(out)
    return out / "report.md"


def family_report(res: dict, model: Loaded, data: str, command: str | None = None) -> Path:
    """``out/report.md``: what was pruned, how it was fine-tuned, the comparison table."""
    s, table = res["settings"], res["table"]
    unit = model.quantity.unit + ("/atom" if model.quantity.per_atom else "")
    doc = Document(f"Pruned {res.get('cut') or 'l=' + ','.join(map(str, res['drop']))} from {Path(model.source).name}")
    doc.text(f"Original: {model.adapter.summary(model)}.")
    doc.text(f"Pruned: {model.adapter.summary(res['variants']['pruned, fine-tuned 0'])}; written to "
             f"`{res['pruned'].name}` in the family's own format.")
    if s.get("channels"):
        doc.text("Channels chosen by importance on the fitted structures (at each point the highest `score`: the "
                 "first-order change of the per-atom energy and of the forces when the channel is zeroed, weighed as "
                 "fine-tuning weighs them; with each channel's norm): [channels.csv](channels.csv); the channels "
                 "kept: [channels_kept.json](channels_kept.json).")
    toward = (f"the labels {s['label']}" if s["label"] else "the original's own energies")
    if s["label"] and res.get("shift") is not None:
        toward += " less one offset per element (--shift-references: they hold another energy reference)"
    if s["forces_from"] == "labels":
        toward += " and the data's forces"
    elif s["forces_from"] == "original":
        toward += " and the original's own forces"
    compared = (f"the {s['held_out']} structures of the held-out file" if s["split"] == "file"
                else f"the last {s['held_out']} (the same kinds of structure as those fitted)")
    seeds = s.get("seeds", 1)
    doc.text(f"Data: {data}; fine-tuned for {s['steps']} Adam steps (learning rate {s['lr']:g}, cosine decay, "
             f"batches of {s['batch_size']}) on {s['fit']} structures toward {toward}, "
             + (f"{seeds} fine-tuning seeds (0-{seeds - 1}), " if seeds > 1 else "one fine-tuning seed, ")
             + f"compared on {compared}. Errors in "
             f"{unit} (energy) and eV/A (force components); speed: structures per second of a prediction"
             + (" with forces" if s["forces"] else "") + " on the held-out structures, the models interleaved "
             "batch by batch in one run (3 rounds), on this machine. The from-scratch model is a control "
             "trained once (seed 0).")
    if table["structures/s"].isna().all():
        doc.text("Structures per second: not measured here (blank); the front times every file by MD in one run.")
    if seeds > 1:
        doc.text(f"Over the fine-tuning seeds: mean and 95% Student t interval over {seeds} seeds (one value, "
                 "no interval, for a model trained once):")
        doc.table(res["seeds_table"].round(5), "comparison_seeds.csv")
        doc.text("Each run:")
    doc.table(table.round(5), "comparison.csv")
    if res.get("md") is not None:
        doc.text("MD steps per second through the family's own ASE calculator (Langevin, 300 K, 0.5 fs; "
                 "interleaved, 2 rounds of 20 steps each):")
        doc.table(res["md"].pivot(index="system", columns="model", values="MD steps/s").round(2).reset_index(),
                  "md_speed.csv")
    elif res.get("md_note"):
        doc.text(f"MD speed: not measured ({res['md_note']}).")
    if command:
        doc.text(f"Command: `{command}`")
    md, _ = doc.write(res["out"])
    return md


def _front_figure(table, out: Path, unit: str):
    """Error against MD steps/s: every cut with its interval over seeds, the original, the reference; the
    Pareto set joined."""
    q = "forces" if table["forces MAE"].notna().any() else "energy"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pt = F.readable_pt(fig)
    for _, r in table.iterrows():
        low, high = r.get(f"{q} MAE low"), r.get(f"{q} MAE high")
        yerr = None if not np.isfinite([low, high]).all() else [[r[f"{q} MAE"] - low], [high - r[f"{q} MAE"]]]
        marker = ("*" if r["model"] == "original" else "s" if r["cut"] == "official"
                  else "D" if str(r["cut"]).startswith("none") else "o")
        ax.errorbar(r["MD steps/s"], r[f"{q} MAE"], yerr=yerr, fmt=marker, ms=9 if marker == "*" else 6,
                    capsize=3, label=r["model"])
    p = table[table["pareto"]].sort_values("MD steps/s")
    ax.plot(p["MD steps/s"], p[f"{q} MAE"], "k--", lw=1, alpha=0.6, label="Pareto set")
    ax.set_xlabel("MD steps/s (the family's calculator, this machine)", fontsize=pt)
    ax.set_ylabel(f"{q} MAE ({unit})", fontsize=pt)
    ax.tick_params(labelsize=pt)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=pt * 0.9, loc="best")
    return F.save(fig, out / "figures", "front")


def front_report(res: dict, model: Loaded, data: str, command: str | None = None) -> Path:
    """``out/report.md`` of ``prune --front``: the front table, its figure, MD speed and each cut's report."""
    table, out = res["table"], res["out"]
    first = next(iter(res["results"].values()))
    s = first["settings"]
    doc = Document(f"Speed/accuracy front of {Path(model.source).name}")
    doc.text(f"Original: {model.adapter.summary(model)}.")
    truth = (f"the labels {s['label']}" if res["truth"] == "labels" else "the original's own predictions (so the "
             "original's error is 0 by construction)")
    doc.text(f"Each cut pruned by surgery, fine-tuned for {s['steps']} Adam steps on {s['fit']} structures of {data} "
             f"with {s.get('seeds', 1)} seeds, and compared on {s['held_out']} held-out structures against {truth}: "
             "mean over seeds with a 95% Student t interval. MD steps/s: Langevin through the family's own "
             "calculator, every file interleaved in one run, on the first system of the MD table; the Pareto set: "
             "no other model is both faster and more accurate (forces where scored).")
    if "MD steps/s" in table:
        doc.figure(_front_figure(table, out, "eV/A" if table["forces MAE"].notna().any() else model.quantity.unit),
                   "Error against MD speed; bars: 95% t interval over seeds")
    doc.table(table.round(5), "front.csv")
    if res.get("md") is not None:
        doc.text("MD steps per second of every system:")
        doc.table(res["md"].pivot(index="system", columns="model", values="MD steps/s").round(3).reset_index(),
                  "md_speed.csv")
    for r in res["results"].values():
        family_report(r, model, data)
    doc.bullets([f"[{name}]({name}/report.md): {r['cut']}" for name, r in res["results"].items()])
    if command:
        doc.text(f"Command: `{command}`")
    md, _ = doc.write(out)
    return md
