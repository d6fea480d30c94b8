"""``irrepprobe report``: a capture in, a directory out (report.md, report.html, figures/, tables/)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ..capture import Capture, capture_untrained, load_capture
from ..errors import IrrepprobeError
from ..fileio import save_csv
from .. import metrics as M
from ..prune import orders_to_drop
from . import figures as F
from .document import Document

# What the verdict calls "carries information about a target": a probe that explains at least half
# the variance, at least 0.2 more than the same probe on the untrained model.
INFO_R2, INFO_SELECTIVITY = 0.5, 0.2
# Targets that correlate this strongly with the model's own target count as the same target.
SAME_TARGET_CORR = 0.95


def _control(cap: Capture, out: Path, model, device, log, trust=None) -> Capture | None:
    """The untrained model's capture over the same structures, reused when already in ``out``; None
    when the model's family has no untrained control."""
    path = out / "control" / "capture"
    if (path / "meta.json").exists():
        ctl = load_capture(path)
        same = (np.array_equal(ctl.arrays["index"], cap.arrays["index"]) and ctl.points == cap.points
                and ctl.meta.get("model_sha256") == cap.meta.get("model_sha256")
                and ctl.meta.get("adapter") == cap.meta.get("adapter"))
        if same:
            log(f"reusing the untrained control capture in {path}")
            return ctl
    return capture_untrained(cap, path, model=model, device=device, trust=trust)


def make_report(capture, out=None, model=None, trust: bool | None = None, ablation_molecules: int | None = 1000,
                map_points: int | None = 2000, map_method: str = "umap", map_layers: list[str] | None = None,
                compare=None, threshold: float = M.THRESHOLD, device: str = "auto", seed: int = 0,
                command: str | None = None, log=print) -> dict:
    """Compute every metric of ``capture`` and write the report into ``out`` (default
    ``CAPTURE/report``). Returns the tables (DataFrames) and the paths written."""
    cap = capture if isinstance(capture, Capture) else load_capture(capture)
    out = Path(out) if out else cap.path / "report"
    figs, tabs = out / "figures", out / "tables"
    if not 0 < threshold < 1:
        raise IrrepprobeError(f"--threshold must be a fraction between 0 and 1, got {threshold:g}")
    if map_method not in M.latent.MAP_METHODS:
        raise IrrepprobeError(f"unknown map method {map_method!r}; valid: {', '.join(M.latent.MAP_METHODS)}")
    hidden = M.hidden_points(cap)
    for p in map_layers or []:
        if p not in cap.points:
            raise IrrepprobeError(f"--map-layers: {p!r} is not a captured point; points: {', '.join(cap.points)}")
    other = load_capture(compare) if compare else None
    timings: list[dict] = []

    @contextmanager
    def stage(name):
        t0 = time.time()
        yield
        timings.append({"stage": name, "seconds": round(time.time() - t0, 2)})
        log(f"  {name}: {timings[-1]['seconds']:.1f} s")

    meta, target = cap.meta, cap.meta["target"]
    with stage("control capture (untrained model)"):
        ctl = _control(cap, out, model, device, log, trust)
    with stage("norms"):
        norms = M.norms(cap)
    with stage("utilisation (ablation, gradient x activation)"):
        util = M.utilisation(cap, model, molecules=ablation_molecules, device=device, trust=trust,
                             interventions=M.INTERVENTIONS, threshold=threshold, seed=seed)
    with stage("probes (ridge, every block x scalar label)"):
        inv = M.invariant_targets(cap)  # the own quantity (beyond composition) and the squared error
        own = inv.drop(columns=["squared error"], errors="ignore")
        Y = M.target_table(cap)
        Y = pd.concat([Y, own[[c for c in own.columns if c not in Y]]], axis=1)
        probes = M.probe_scores(cap, Y, ctl, seed=seed)
    with stage("probes (equivariant)"):
        eq = M.equivariant_probe_scores(cap, M.equivariant_targets(cap), ctl, seed=seed)
    with stage("latent structure (kNN)"):
        knn = M.knn_scores(cap, inv, points=hidden, seed=seed)
    with stage(f"latent maps ({map_method})"):
        maps, n_map = _maps(cap, inv, map_layers or hidden[-1:], map_points, map_method, seed)
    with stage("similarity (CKA)"):
        cka = M.cka_matrix(cap)
        cka_ctl = M.cka_matrix(cap, ctl) if ctl is not None else None
        cka_other = M.cka_matrix(cap, other) if other is not None else None

    own_col = own.columns[0]
    copies = _same_target(Y, own_col)
    verdict = _verdict(util, probes, eq, hidden, threshold, copies, target)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"norms": norms, "utilisation": util, "probes": probes, "probes_equivariant": eq,
              "latent_knn": knn, "verdict": verdict["table"]}
    for name, df in tables.items():
        save_csv(df, tabs / f"{name}.csv")
    save_csv(cka, tabs / "cka.csv", index=True)
    if cka_ctl is not None:
        save_csv(pd.DataFrame({p: [cka_ctl.loc[p, p]] for p in cap.points}, index=["trained vs untrained"]),
                 tabs / "cka_trained_vs_untrained.csv", index=True)
    if cka_other is not None:
        save_csv(cka_other, tabs / "cka_compare.csv", index=True)

    model_name = Path(meta["model"]).name
    _, _, unit = M.own_quantity(cap)
    mae = float(np.abs(cap.errors).mean()) if "error" in cap.arrays else None
    head = (f"{model_name} ({meta['adapter']}), " + (f"target {target} ({unit})" if target else
            f"no label of its {meta['quantity']['name']}") + f", {meta['data']}, {meta['n_molecules']} structures")

    paths = {}
    sel = probes[probes["target"] == own_col]
    zero = util[(util["point"] != "all") & (util["intervention"] == "zero")].assign(
        percent=lambda d: 100 * d["scale_free"],
        mark=lambda d: np.where(~d["reachable"], "unreachable", np.where(~d["used"], "unused", "")))
    paths["utilisation"] = F.save(F.utilisation_heatmap(
        F.grid(norms, "norm_share", hidden), F.grid(zero, "percent", hidden), F.grid(sel, "selectivity", hidden),
        head, own_col, threshold, marks=F.grid(zero, "mark", hidden).replace("", np.nan),
        unit="% of what the model learned beyond composition" if mae is not None else "% of the prediction's spread"),
        figs, "utilisation_heatmap")
    last = hidden[-1]
    pl = probes[probes["point"] == last]
    r2g = pl.pivot_table(index="target", columns="block", values="r2").reindex(columns=F.block_order(pl["block"]))
    selg = pl.pivot_table(index="target", columns="block", values="selectivity").reindex(columns=r2g.columns)
    paths["probes"] = F.save(F.probe_heatmap(r2g, selg, f"{head}\nprobes of {last} (targets x blocks)"),
                             figs, "probe_heatmap")
    paths["maps"] = F.save(F.latent_maps(maps, f"{head}\n{map_method} of pooled block invariants, "
                                               f"{n_map} of {meta['n_molecules']} molecules"), figs, "latent_maps")
    paths["cka"] = F.save(F.cka_heatmap(cka, f"linear CKA between layers\n{head}"), figs, "cka")
    if cka_other is not None:
        paths["cka_compare"] = F.save(F.cka_heatmap(cka_other, f"linear CKA: {model_name} vs "
                                                    f"{Path(other.meta['model']).name}",
                                                    xlabel=f"point of {other.path.name}"), figs, "cka_compare")

    doc = _document(head, meta, mae, unit, verdict, norms, util, probes, eq, knn, cka_ctl, paths, own_col,
                    threshold, n_map, map_method, ablation_molecules, timings, command)
    save_csv(pd.DataFrame(timings), tabs / "timings.csv")
    md, page = doc.write(out)
    return {"out": out, "report_md": md, "report_html": page, "figures": paths, "tables": tables,
            "cka": cka, "verdict": verdict, "timings": pd.DataFrame(timings)}


def _maps(cap, inv, points, n_points, method, seed):
    idx = M.subsample(len(cap.outputs), n_points, seed)
    tcol = inv.columns[0]
    _, _, unit = M.own_quantity(cap)
    second = (("error", np.log10(inv["squared error"].to_numpy()[idx] + 1e-12), f"log10 squared error ({unit}^2)",
               "magma") if "squared error" in inv else
              ("size", cap.arrays["n_atoms"][idx].astype(float), "atoms per structure", "magma"))
    maps = []
    for p in points:
        for b in cap.blocks(p):
            xy = M.latent_map(M.invariants(cap, p, b)[idx], method, seed)
            maps.append({"point": p, "block": b, "xy": xy, "colours": [
                ("target", inv[tcol].to_numpy()[idx], f"{tcol} beyond composition ({unit})", "viridis"), second]})
    return maps, len(idx)


def _same_target(Y: pd.DataFrame, own: str) -> list[str]:
    corr = Y.corr()[own].abs()
    return sorted(corr[corr >= SAME_TARGET_CORR].index)


SWEEP = (0.01, 0.02, 0.05, 0.10)


def _interval(r) -> str:
    return f"{100 * r.scale_free:.1f}% [{100 * r.scale_free_low:.1f}, {100 * r.scale_free_high:.1f}]"


def _verdict(util, probes, eq, hidden, threshold, copies, target) -> dict:
    rows_all = util[util["point"].isin(hidden)]
    per_block = rows_all.drop_duplicates(["point", "block"])
    unreachable = per_block[~per_block["reachable"]]
    unused = per_block[per_block["reachable"] & ~per_block["used"]]
    drop = orders_to_drop(util, threshold, hidden)
    both = pd.concat([probes, eq], ignore_index=True)
    both = both[both["point"].isin(hidden) & ~both["target"].isin(copies) & (both["target"] != target)]
    info = both[(both["r2"] >= INFO_R2) & (both["selectivity"] >= INFO_SELECTIVITY)]
    best = info.sort_values("selectivity", ascending=False).groupby("target", sort=False).head(1)
    rows = []
    for r in per_block.itertuples():
        carried = info[(info["point"] == r.point) & (info["block"] == r.block)]["target"].tolist()
        row = {"point": r.point, "block": r.block, "l": r.l}
        for k in rows_all[(rows_all["point"] == r.point) & (rows_all["block"] == r.block)].itertuples():
            row[k.intervention] = _interval(k)
        row["verdict"] = "unreachable by construction" if not r.reachable else ("used" if r.used else "unused")
        row["carries (other targets)"] = ", ".join(carried)
        rows.append(row)
    joint = util[util["point"] == "all"]
    sweep = []
    for t in SWEEP:
        used = M.verdicts(util, t)
        blocks = util[util["point"].isin(hidden) & util["reachable"] & ~used].drop_duplicates(["point", "block"])
        sweep.append({"threshold": f"{100 * t:g}%", "unused blocks": ", ".join(f"{p} {b}" for p, b in
                                                                           blocks[["point", "block"]].values) or "none",
                      "orders to drop": ", ".join(f"l={l}" for l in orders_to_drop(util, t, hidden)) or "none"})
    return {"unused": unused[["point", "block"]].values.tolist(),
            "unreachable": unreachable[["point", "block"]].values.tolist(), "drop": drop, "best_other": best,
            "table": pd.DataFrame(rows), "copies": copies, "sweep": pd.DataFrame(sweep),
            "joint": joint[["block", "intervention", "scale_free", "scale_free_low", "scale_free_high"]]}


def _document(head, meta, mae, unit, verdict, norms, util, probes, eq, knn, cka_ctl, paths, own_col, threshold,
              n_map, map_method, ablation_molecules, timings, command) -> Document:
    doc = Document(f"irrepprobe report: {head}")
    doc.text(meta["model_summary"] + ".")
    sha = meta.get("model_sha256")
    doc.text(f"Capture of {meta['model']}" + (f" (sha256 {sha[:12]})" if sha else "") + f" through the "
             f"{meta['adapter']} adapter over {meta['n_molecules']} structures of {meta['data']}, created "
             f"{meta['created']}; " + (f"MAE of the model against {meta['target']}: {mae:.4f} {unit}." if mae is not None
             else f"the data holds no label of the model's {meta['quantity']['name']}, so utilisation measures how "
             "far ablation moves the model's own prediction."))
    doc.heading("Verdict")
    unused = [f"{p} {b}" for p, b in verdict["unused"]]
    unreachable = [f"{p} {b}" for p, b in verdict["unreachable"]]
    best = verdict["best_other"]
    doc.bullets([
        f"Unused blocks (the 95% interval of the scale-free utilisation below {threshold:.0%} under every "
        "intervention: zero, mean and resample): " + (", ".join(unused) if unused else "none") + ".",
        "Unreachable by construction (no gradient from any output, on the data and on randomly displaced "
        "atoms: nothing downstream reads them), neither used nor unused and left out of every count: "
        + (", ".join(unreachable) if unreachable else "none") + ".",
        "Orders a pruning step would drop (every reachable block of the order unused at every layer, and "
        "the order replaced everywhere at once unused too): "
        + (", ".join(f"l={l}" for l in verdict["drop"]) if verdict["drop"] else "none") + ".",
        f"Information about targets the model was not trained on (probe R2 >= {INFO_R2} and selectivity "
        f">= {INFO_SELECTIVITY}; {', '.join(verdict['copies']) or 'none'} count as the model's own target): "
        + ("; ".join(f"{r.target} in {r.point} {r.block} (R2 {r.r2:.2f}, selectivity {r.selectivity:+.2f})"
                     for r in best.itertuples()) if len(best) else "none") + ".",
    ])
    doc.table(verdict["table"], "tables/verdict.csv")
    doc.text("How the verdict moves with the threshold:")
    doc.table(verdict["sweep"], "tables/verdict_thresholds.csv")
    doc.heading("Utilisation")
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
    doc.text(f"Ablation replaces a block at its point, so every later module sees the replacement, and {score}. "
             "Three interventions: zero; mean (the per-channel mean over the data for l = 0; for l > 0 the "
             "rotation average, zero, so mean and zero agree there); resample (the block of another structure, "
             "atom by atom, randomly rotated for l > 0). Each row says which (`intervention`). Next to the raw "
             f"relative change (`utilisation`), a scale-free score (`scale_free`): {scale_free}, with a 95% "
             "paired bootstrap interval over structures (1,000 resamples). The numbers are about what leaves each "
             "point: for a layer with a residual this is the stream, all that layers up to it wrote. Point 'all' "
             "replaces one order at every point at once. Gradient x activation is the first-order estimate of "
             f"the zero ablation's change, in {unit}; `max_abs_grad` and `reachable` come from the reachability "
             "check.")
    doc.figure(paths["utilisation"], "Norm share, ablation utilisation and probe selectivity for "
                                     f"{own_col}, per layer and block")
    doc.table(util.drop(columns=["molecules"]), "tables/utilisation.csv")
    doc.heading("Norms")
    doc.table(norms.drop(columns=["mean_sq_norm"]), "tables/norms.csv")
    doc.heading("Probes")
    control = ("the same probe on the untrained model (same architecture, re-initialised; selectivity = R2 - "
               "R2 untrained)" if cka_ctl is not None else
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
    doc.heading("Latent structure")
    doc.text(f"k-nearest-neighbour regression (k=10, standardised invariants, 5-fold) of {own_col} beyond "
             "composition" + (" and of the model's squared error" if mae is not None else "") + " from each "
             f"block; maps of {n_map} structures (a random subsample when the capture holds more) by {map_method}.")
    doc.table(knn.pivot_table(index=["point", "block"], columns="target", values="knn_r2").reset_index(),
              "tables/latent_knn.csv")
    doc.figure(paths["maps"], "Latent maps per block coloured by the own quantity and "
                              + ("squared error" if mae is not None else "size"))
    doc.heading("Similarity")
    doc.figure(paths["cka"], "Linear CKA between layers (z-scored pooled invariants)")
    if cka_ctl is not None:
        doc.text("CKA of each layer with the same layer of the untrained model: " + ", ".join(
            f"{p} {cka_ctl.loc[p, p]:.2f}" for p in cka_ctl.index) + ".")
    if "cka_compare" in paths:
        doc.figure(paths["cka_compare"], "Linear CKA with the compared model's layers")
    doc.heading("How this report was made")
    if command:
        doc.text(f"Command: `{command}`")
    doc.text(f"irrepprobe {meta['versions'].get('irrepprobe', '?')}, torch {meta['versions'].get('torch', '?')}, "
             f"e3nn {meta['versions'].get('e3nn', '?')}. Every table is in tables/ as CSV, every figure in "
             "figures/ as PNG and SVG" + ("; the untrained control capture is in control/." if cka_ctl is not None
                                          else "."))
    doc.table(pd.DataFrame(timings), None)
    return doc
