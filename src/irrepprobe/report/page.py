"""The capture report's page: its title line, its figures and the document (report.md, report.html),
drawn from the tables and verdict that :func:`irrepprobe.study.make_report` measured."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.verdicts import INFO_R2, INFO_SELECTIVITY
from . import figures as F
from .document import Document
from .summary import describe, header, probe_warnings, read_first, rests_on, summary


def title(meta, target, unit) -> str:
    """The report's title line: the model, its target (or quantity), the data and how many structures."""
    model_name = Path(meta["model"]).name
    return (f"{model_name} ({meta['adapter']}), " + (f"target {target} ({unit})" if target else
            f"no label of its {meta['quantity']['name']}") + f", {meta['data']}, {meta['n_molecules']} structures")


def draw(out: Path, head, meta, mae, norms, util, probes, hidden, own_col, threshold, maps, map_method, n_map, cka,
         cka_other=None, other=None) -> dict:
    """The report's figures in ``out/figures``: utilisation heatmap, probe heatmap, latent maps, CKA (and
    CKA against the ``other`` capture). Returns their paths by name."""
    figs = out / "figures"
    model_name = Path(meta["model"]).name
    paths = {}
    sel = probes[probes["target"] == own_col]
    zero = util[(util["point"] != "all") & (util["intervention"] == "zero")]
    zero = zero if "degenerate" in zero else zero.assign(degenerate=False)  # tables from before the label
    zero = zero.groupby(["point", "block"], as_index=False, sort=False).agg(  # the larger of the quantities
        scale_free=("scale_free", "max"), reachable=("reachable", "first"), used=("used", "first"),
        degenerate=("degenerate", "first")).assign(
        percent=lambda d: 100 * d["scale_free"],
        mark=lambda d: np.where(d["degenerate"].astype(bool), "degenerate", np.where(~d["reachable"], "unreachable",
                                                                         np.where(~d["used"], "unused", ""))))
    paths["utilisation"] = F.save(F.utilisation_heatmap(
        F.grid(norms, "norm_share", hidden), F.grid(zero, "percent", hidden), F.grid(sel, "selectivity", hidden),
        head, own_col, threshold, marks=F.grid(zero, "mark", hidden).replace("", np.nan),
        unit=("% of what the model learned beyond composition" if mae is not None else "% of the prediction's spread")
        + (" (the larger of energy and forces)" if "quantity" in util and util["quantity"].nunique() > 1 else "")),
        figs, "utilisation_heatmap")
    last = hidden[-1]
    pl = probes[probes["point"] == last]
    r2g = pl.pivot_table(index="target", columns="block", values="r2").reindex(columns=F.block_order(pl["block"]))
    selg = pl.pivot_table(index="target", columns="block", values="selectivity").reindex(columns=r2g.columns)
    paths["probes"] = F.save(F.probe_heatmap(r2g, selg, f"{head}\nprobes of {last} (targets x blocks)"),
                             figs, "probe_heatmap")
    paths["maps"] = F.save(F.latent_maps(maps, f"{head}\n{map_method} of pooled block invariants, "
                                               f"{n_map} of {meta['n_molecules']} structures"), figs, "latent_maps")
    paths["cka"] = F.save(F.cka_heatmap(cka, f"debiased CKA between layers (composition regressed out)\n{head}"), figs, "cka")
    if cka_other is not None:
        paths["cka_compare"] = F.save(F.cka_heatmap(cka_other, f"debiased CKA: {model_name} vs "
                                                    f"{Path(other.meta['model']).name}",
                                                    xlabel=f"point of {other.path.name}"), figs, "cka_compare")
    return paths


def spread_text(spread: pd.DataFrame) -> str:
    n = int(spread["seeds"].max())
    ratio = spread["spread_ratio"].replace([np.inf, -np.inf], np.nan).dropna()
    return (f"The scale-free utilisation of {n} training runs of this configuration (this model first), each measured "
            "on the same structures: their mean with a Student t interval over seeds, their standard deviation "
            "(`sd`), and `spread_ratio`, that deviation over this model's within-model standard error (its "
            "bootstrap interval over structures). " + (f"Median spread ratio {ratio.median():.1f} (largest "
            f"{ratio.max():.1f}): " + ("the within-model intervals understate how far a retrained model moves; "
            "read a verdict near the threshold with the seeds' interval." if ratio.median() > 2 else
            "the seeds agree about as well as the within-model intervals say.") if len(ratio) else ""))


def legs_text(legs: pd.DataFrame, threshold: float) -> str:
    """What the orders table's legs are, with the budget and split they were measured on."""
    rec = legs[legs["leg"] != "necessity"]
    text = (f"Each leg gives needed (some interval wholly above {threshold:.0%}), dispensable (every interval below "
            "it) or undecided, over every quantity and over the raw change of the error as well as the scale-free "
            "share. Dependence: the order zeroed at every point and in the spherical harmonics (the masked model), "
            "as the checkpoint stands. ")
    if len(rec):
        r = rec.iloc[0]
        how = (f"the labels {r['label']}" if isinstance(r["label"], str) and r["label"] else
               "the checkpoint's own predictions (distilled: the data holds no label of its quantity)")
        text += (f"Recovery: the masked model fine-tuned for {int(r['steps'])} Adam steps (learning rate "
                 f"{r['lr']:g}, cosine decay, batches of {int(r['batch_size'])}) on the first {int(r['fit'])} "
                 f"structures toward {how}" + (" with forces" if r["forces"] else "") + f", scored on the other "
                 f"{int(r['held_out'])}, against the checkpoint given the same fine-tuning (the control, whose own "
                 "move is shown) so that what fine-tuning alone gains is not counted as recovery. Intervals: paired "
                 "bootstrap over held-out structures, within this one model. ")
    if (legs["leg"] == "necessity").any():
        text += ("Necessity: a model trained from scratch without the order (same budget and seed), its error "
                 "against the checkpoint's on the same structures. ")
    return text + "A share above 100% means worse than the composition fit."


def document(head, meta, mae, unit, verdict, norms, util, probes, eq, knn, cka_ctl, paths, own_col, threshold,
             n_map, map_method, ablation_molecules, timings, command, checks, first_look, legs=None,
             spread=None) -> Document:
    """The capture report as a :class:`Document`: the summary first, every table and figure folded below."""
    doc = Document(f"irrepprobe report: {head}")
    doc.text(meta["model_summary"] + ".")
    doc.heading("Summary")
    first = read_first(meta, util, checks) + probe_warnings(probes)
    if first:
        doc.text("Read this first:")
        doc.bullets(first)
    doc.bullets(summary(meta, verdict, util, legs, spread, threshold))
    doc.figure(paths["utilisation"], "Norm share, ablation utilisation (dependence) and probe selectivity "
                                     f"(information) for {own_col}, per layer and block")
    doc.figure(paths["maps"], "Latent maps per block coloured by the own quantity and "
                              + ("squared error" if mae is not None else "size"))
    if "chemiscope" in paths:
        doc.text(f"Explore the structures, maps, per-order norms and ablation shifts interactively: open "
                 f"[explore.html](explore.html) in a browser (offline, chemiscope's own viewer; the map coloured "
                 f"and sized by the error), or [{paths['chemiscope'].name}]({paths['chemiscope'].name}) at "
                 f"https://chemiscope.org (drop the file on the page) or in Jupyter with "
                 f"`chemiscope.show_input(\"{paths['chemiscope'].name}\")`.")
    doc.fold("What was measured")
    doc.bullets(header(meta, util))
    sha = meta.get("model_sha256")
    doc.text(f"Capture of {meta['model']}" + (f" (sha256 {sha[:12]})" if sha else "") + f" through the "
             f"{meta['adapter']} adapter over {meta['n_molecules']} structures of {meta['data']}, created "
             f"{meta['created']}; " + (f"MAE of the model against {meta['target']}: {mae:.4f} {unit}." if mae is not None
             else (f"the data's label {meta['reference']['label']} is on another reference (above)"
                   if (meta.get("reference") or {}).get("other_reference") else
                   f"the data holds no label of the model's {meta['quantity']['name']}")
             + ", so utilisation measures how far ablation moves the model's own prediction."))
    doc.fold("Verdict in detail")
    unused = [f"{p} {b}" for p, b in verdict["unused"]]
    unreachable = [f"{p} {b}" for p, b in verdict["unreachable"]]
    best = verdict["best_other"]
    doc.bullets([
        "What it rests on: " + rests_on(util) + (f"; {int(spread['seeds'].max())} seeds' spread in 'Across seeds'"
                                                 if spread is not None else "")
        + ("; the verdict on orders rests on " + ("recovery" if (legs["leg"] == "recovery").any() else "necessity")
           + " (the orders table)" if legs is not None else "") + ".",
        f"Unused blocks (the 95% interval of the scale-free utilisation, and of the raw relative change of the "
        f"error where there is one, below {threshold:.0%} under every intervention, zero, mean and resample, and "
        "for every quantity scored): "
        + (", ".join(unused) if unused else "none") + ".",
        "Unreachable by construction (no gradient from any output, on the data and on randomly displaced "
        "atoms: nothing downstream reads them), neither used nor unused and left out of every count: "
        + (", ".join(unreachable) if unreachable else "none") + ".",
        ("Orders a pruning step would drop (rests on recovery: the damage left after fine-tuning with the order "
         f"masked lies below {threshold:.0%}, see the orders table): " if legs is not None and
         (legs["leg"] == "recovery").any() else
         "Orders a pruning step would drop (rests on dependence: every reachable block of the order unused at every "
         "layer of this checkpoint, and the order replaced everywhere at once unused too; `--recovery` asks whether "
         "the architecture needs it): ")
        + (", ".join(f"l={l}" for l in verdict["drop"]) if verdict["drop"] else "none") + ".",
        f"Information held about targets the model was not trained on (probes: what a block holds, not what the "
        f"model uses; probe R2 >= {INFO_R2}, selectivity "
        f">= {INFO_SELECTIVITY} and above every untrained initialisation; {', '.join(verdict['copies']) or 'none'} count as the model's own target): "
        + ("; ".join(f"{r.target} in {r.point} {r.block} (R2 {r.r2:.2f}, selectivity {r.selectivity:+.2f})"
                     for r in best.itertuples()) if len(best) else "none") + ".",
    ])
    doc.text(f"Column `dependence` gives each block three outcomes on this checkpoint: needed (some interval lies "
             f"wholly above {threshold:.0%}), dispensable (every interval below it), undecided (one straddles it). "
             "It is about this trained checkpoint only (a co-adapted network depends on what it was trained with), "
             "not whether the architecture needs the block. A block nothing downstream reads says `unreachable` "
             "there: replacing it changes nothing by construction, which is no dependence outcome. A share above "
             "100% means the ablated model is worse "
             "than the composition fit (or, for forces, than zero forces).")
    if verdict.get("orders") is not None:
        doc.text("Orders: does the architecture need each one, or only this checkpoint? " + legs_text(legs, threshold))
        doc.table(verdict["orders"], "tables/orders.csv")
    doc.table(verdict["table"], "tables/verdict.csv")
    if len(verdict["joint"]):
        doc.text("Each order l > 0 replaced at every point at once, and (`removed`) truly removed:")
        doc.table(verdict["joint"], None)
    doc.text("How the verdict moves with the threshold:")
    doc.table(verdict["sweep"], "tables/verdict_thresholds.csv")
    doc.text("Each intervention on its own, per threshold (reachable blocks; unused under an intervention: the "
             "upper end of its interval below the threshold; a block is unused only when every intervention "
             "says so):")
    doc.table(verdict["grid"], "tables/verdict_by_intervention.csv")
    doc.fold("Utilisation")
    n_util = int(util["molecules"].iloc[0])
    score = (f"reports the relative increase of the MAE against {meta['target']} on the first {n_util} captured "
             "structures" if mae is not None else
             f"reports how far that moves the model's own prediction on the first {n_util} captured structures: the "
             f"mean absolute change of its {meta['quantity']['name']}" + (" per atom" if meta["quantity"]["per_atom"]
             else "") + ", over the mean absolute deviation of that prediction over the same structures (the data "
             "holds no label of it)")
    scale_free = ("the share of what the model learned beyond a least-squares fit on element counts, "
                  "(MAE ablated - MAE) / (MAE of the composition fit - MAE)" if mae is not None else
                  "the shift itself, already relative to the spread")
    if "structures" in util:
        most = int(util["structures"].max())
        seq = (f" A sequential rule adds structures batch by batch: at {first_look} structures and every doubling, "
               f"an ablation whose interval (at level 1 - 5%/K for K looks, Bonferroni: the chance that any early "
               f"stop calls a block used that is not stays below 5%) lies wholly above the {threshold:.0%} threshold "
               f"for some quantity stops; the rest go on to all {most} structures, so an 'unused' verdict always "
               "rests on every structure. Column `structures` says how many each row used; its interval is the "
               "usual 95%."
               if first_look else
               " Every ablation ran on every structure (no sequential rule).")
    else:
        seq = ""
    doc.text(f"Ablation replaces a block at its point, so every later module sees the replacement, and {score}.{seq} "
             + ("Forces are scored beside the energy: " + describe("forces", util.loc[util["quantity"] == "forces",
                "score"].iloc[0], meta) + "; scale-free against zero forces (what a fit on element counts "
                "predicts) when the data has force labels. " if "quantity" in util and (util["quantity"] == "forces").any()
                else "")
             + "Three interventions: zero; mean (the per-channel mean over the data for l = 0; for l > 0 the "
             "rotation average, zero, so mean is zero there: those rows are the zero ablation's, not rerun); resample (the block of another structure, "
             "atom by atom, randomly rotated for l > 0). Each row says which (`intervention`). Next to the raw "
             f"relative change (`utilisation`), a scale-free score (`scale_free`): {scale_free}, with a 95% "
             "paired bootstrap interval over structures (1,000 resamples). That interval is within this one model: "
             "it resamples structures, not training runs, and across seeds of one configuration an order's "
             "utilisation has varied far more (in the Lee study a median 8x the bootstrap standard error of one "
             "model). The numbers are about what leaves each "
             "point: for a layer with a residual this is the stream, all that layers up to it wrote; its own "
             "contribution is the point `layers.k.update` where the family exposes it. Point 'all' replaces one "
             "order at every point at once; where the family can build it, intervention `removed` is the order "
             "truly removed (its spherical harmonics and every path through it switched off, the function a "
             "warm-started pruned model starts from), which joint replacement is not. Gradient x activation is the first-order estimate of "
             f"the zero ablation's change, in {unit}; `max_abs_grad` and `reachable` come from the reachability "
             "check.")
    doc.table(util.drop(columns=["molecules", "edits"], errors="ignore"), "tables/utilisation.csv")
    if spread is not None:
        doc.fold("Across seeds")
        doc.text(spread_text(spread))
        shown = spread[spread["intervention"] == "zero"].drop(columns=["intervention"])
        doc.table(shown.round(4), "tables/seeds.csv")
    doc.fold("Norms")
    doc.table(norms.drop(columns=["mean_sq_norm"]), "tables/norms.csv")
    doc.fold("Probes: information held in each block")
    n_ctl = int(probes["controls"].iloc[0]) if len(probes) else 0
    control = (f"the same probe on {n_ctl} untrained initialisations of the same architecture (the run's own "
               "and fresh seeds; r2_untrained is their mean, r2_untrained_sd their spread; selectivity = R2 - "
               "r2_untrained, and above_controls says whether R2 beats every one of them); a control task, the "
               "labels shuffled within groups of molecules of equal composition (r2_control_task: what a probe "
               "gets from composition and memorisation alone; selectivity_task = R2 - r2_control_task)"
               if cka_ctl is not None else
               f"no untrained control: the {meta['adapter']} adapter cannot re-initialise this model, so "
               "selectivity is not given")
    doc.text("Ridge probes from each block's pooled invariants (per channel: summed and mean value or norm, "
             "and the norm of the summed vector) to every scalar label of the data and the model's own quantity, "
             "beyond composition (each minus its least-squares fit on element counts: extensive quantities are "
             "almost all composition, which trained and untrained models alike encode); 5-fold out-of-fold R2. "
             f"Controls: {control}; and shuffled labels (r2_shuffled, expected near 0).")
    doc.figure(paths["probes"], "Probe R2 and selectivity for the last layer's blocks")
    doc.text("Equivariant probes: every vector label from the l=1 blocks and the traceless part of every 3x3 "
             "label from the l=2 blocks (either parity), as a weighted sum of a block's summed channels (scalar "
             "weights, so the probe rotates with the structure); R2 against zero, the only equivariant constant."
             + (" qm9pack's polarizability tensors are not in the frame of the geometries, so the 2e probe "
                "cannot succeed on that label whatever the block holds." if meta["data"].startswith("qm9") else "")
             + ("" if len(eq) else " The data holds no vector or tensor label: no equivariant probe."))
    doc.table(eq, "tables/probes_equivariant.csv")
    doc.fold("Latent structure")
    doc.text(f"k-nearest-neighbour regression (k=10, standardised invariants, 5-fold) of {own_col} beyond "
             "composition" + (" and of the model's squared error" if mae is not None else "") + " from each "
             f"block; maps of {n_map} structures (a random subsample when the capture holds more) by {map_method}.")
    doc.table(knn.pivot_table(index=["point", "block"], columns="target", values="knn_r2").reset_index(),
              "tables/latent_knn.csv")
    if verdict.get("maps") is not None:
        doc.fold("Lee et al.'s criterion: do the maps look structured?")
        doc.text(f"Each block's pooled features (raw components, orientation-dependent as in Lee et al.; and "
                 f"invariants) mapped to 2-D by {map_method}, the map scored by the out-of-fold R2 of a "
                 f"10-nearest-neighbour regression of {own_col} beyond composition from the map coordinates, "
                 "against the same map on permuted targets (95th percentile of 20), the block's map in each untrained "
                 "initialisation and the map of the element counts: `structured` when it beats all three "
                 "(tables/map_criterion.csv). Beside it what the model uses: dependence per block, recovery and "
                 "necessity per order.")
        doc.table(verdict["maps"], "tables/map_cross.csv")
    doc.fold("Similarity")
    doc.text("Debiased CKA (linear kernels, unbiased HSIC; about 0 for unrelated features at any sample size, "
             "where plain linear CKA is biased upward) between points' pooled invariants, z-scored, with the "
             "element counts regressed out: plain CKA is dominated by composition, which any featurisation of "
             "the same molecules shares.")
    doc.figure(paths["cka"], "Debiased CKA between layers (composition-residualised pooled invariants)")
    if cka_ctl is not None:
        doc.text("Each point against the same point of the untrained model (its own initialisation), the "
                 "debiased CKA of independent Gaussian features of the same shape beside it (what no relation "
                 "scores), and plain linear CKA on the raw features for comparison:")
        doc.table(cka_ctl.round(3), "tables/cka_trained_vs_untrained.csv")
    if "cka_compare" in paths:
        doc.figure(paths["cka_compare"], "Linear CKA with the compared model's layers")
    doc.unfold()
    doc.heading("How this report was made")
    if command:
        doc.text(f"Command: `{command}`")
    doc.text(f"irrepprobe {meta['versions'].get('irrepprobe', '?')}, torch {meta['versions'].get('torch', '?')}, "
             f"e3nn {meta['versions'].get('e3nn', '?')}. Every table is in tables/ as CSV, every figure in "
             "figures/ as PNG and SVG" + ("; the untrained control capture is in control/." if cka_ctl is not None
                                          else "."))
    doc.table(pd.DataFrame(timings), None)
    return doc
