"""The prune comparison report: test error and latent structure of the full and pruned models."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..fileio import save_csv
from . import figures as F
from .document import Document


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
