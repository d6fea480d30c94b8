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
    doc = Document(f"Pruned l={','.join(map(str, res['drop']))} from {Path(model.source).name}")
    doc.text(f"Original: {model.adapter.summary(model)}.")
    doc.text(f"Pruned: {model.adapter.summary(res['variants']['pruned, fine-tuned 0'])}; written to "
             f"`{res['pruned'].name}` in the family's own format.")
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
