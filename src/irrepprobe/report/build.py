"""``irrepprobe report``: a capture in, a directory out (report.md, report.html, figures/, tables/)."""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ..capture import Capture, capture_untrained, load_capture, model_of, structures_of
from ..runtime import resolve_device
from ..errors import IrrepprobeError
from ..fileio import save_csv, save_json
from .. import metrics as M
from ..metrics.maps import cross_table, map_scores
from ..metrics.recovery import LEGS
from ..metrics.verdicts import orders_to_drop
from . import figures as F
from .document import Document
from .viewer import export as export_viewer

# What the verdict calls "carries information about a target": a probe that explains at least half
# the variance, at least 0.2 more than the same probe on the untrained model.
INFO_R2, INFO_SELECTIVITY = 0.5, 0.2
# gradient x activation (a first-order diagnostic beside the ablations) on the first so many structures
ATTRIBUTION_MOLECULES = 128
# a probe control whose untrained R2 (mean over initialisations) or control-task R2 is below this is
# broken (the ridge fit extrapolates wildly): selectivity against it is not information
CONTROL_FLOOR = -1.0
# Targets that correlate this strongly with the model's own target count as the same target.
SAME_TARGET_CORR = 0.95


def _controls(cap: Capture, out: Path, model, device, log, trust=None, n: int = 5) -> list[Capture]:
    """Captures of ``n`` untrained initialisations over the same structures, at the points the probes
    read (the hidden ones): the run's own (the weights training began from, ``control/capture``) and
    seeds 1..n-1 (``control/seed{k}``), each reused when already in ``out``; empty when the model's
    family has no untrained control. The trained model is loaded and the batches built once for all."""
    points = M.hidden_points(cap)
    ctls, shared = [], None
    for k in range(n):
        path = out / "control" / ("capture" if k == 0 else f"seed{k}")
        if (path / "meta.json").exists():
            ctl = load_capture(path)
            same = (np.array_equal(ctl.arrays["index"], cap.arrays["index"]) and set(ctl.points) == set(points)
                    and ctl.meta.get("model_sha256") == cap.meta.get("model_sha256")
                    and ctl.meta.get("adapter") == cap.meta.get("adapter")
                    and ctl.meta.get("head") == cap.meta.get("head"))
            if same:
                log(f"reusing the untrained control capture in {path}")
                ctls.append(ctl)
                continue
        if shared is None:
            trained = model_of(cap, model, trust=trust, device=resolve_device(device))
            structures = structures_of(cap)
            batch_size = int(cap.meta.get("batch_size") or 64)
            shared = {"trained": trained, "structures": structures,
                      "batches": list(trained.adapter.batches(trained, structures, batch_size))}
        ctl = capture_untrained(cap, path, seed=None if k == 0 else k, points=points, **shared)
        if ctl is None:
            return []
        ctls.append(ctl)
    return ctls


def _utilisation(cap: Capture, out: Path, model, molecules, device, trust, threshold, seed, log, quantity,
                 first_look) -> pd.DataFrame:
    """Utilisation under every intervention, reused from ``out`` when an earlier report there measured
    the same model on the same structures with the same settings (``tables/utilisation.json`` says so):
    it is the costly stage, and a report rerun for its other parts should not redo it."""
    key = {"model_sha256": cap.meta.get("model_sha256"), "data_sha256": cap.meta.get("data_sha256"),
           "index_sha256": hashlib.sha256(np.ascontiguousarray(cap.arrays["index"]).tobytes()).hexdigest(),
           "points": M.hidden_points(cap), "molecules": molecules, "interventions": list(M.INTERVENTIONS),
           "seed": seed, "head": cap.meta.get("head"), "quantity": quantity, "first_look": first_look,
           "threshold": threshold, "table_version": 4}
    table, meta = out / "tables" / "utilisation.csv", out / "tables" / "utilisation.json"
    if table.exists() and meta.exists() and json.loads(meta.read_text()) == key:
        log(f"reusing the utilisation measured for this model and data in {table}")
        util = pd.read_csv(table)
        util["parity"] = util["parity"].fillna("")
        util["used"] = M.verdicts(util, threshold)
        return util
    util = M.utilisation(cap, model, molecules=molecules, device=device, trust=trust,
                         interventions=M.INTERVENTIONS, threshold=threshold, seed=seed, quantity=quantity,
                         first_look=first_look, attribution_molecules=ATTRIBUTION_MOLECULES)
    meta.unlink(missing_ok=True)  # the key goes last: a table without it is never reused
    save_csv(util, table)
    save_json(key, meta)
    return util


def _seeds(cap, util, seeds, out, molecules, device, trust, threshold, seed, log, quantity, first_look):
    """:func:`irrepprobe.metrics.across_seeds` over this model and the captures ``seeds`` (each one's
    utilisation measured on the same structures, kept in ``out/seeds/seedK``)."""
    tables, names = [util], ["this model"]
    n = int(util["molecules"].iloc[0]) if "molecules" in util else None
    for k, path in enumerate(seeds, 1):
        other = load_capture(path)
        if not np.array_equal(other.arrays["index"][:n], cap.arrays["index"][:n]):
            raise IrrepprobeError(f"--seeds: {path} is not over the same structures as {cap.path}")
        if set(M.hidden_points(other)) != set(M.hidden_points(cap)):
            raise IrrepprobeError(f"--seeds: {path} has other points than {cap.path}: not the same architecture")
        tables.append(_utilisation(other, out / "seeds" / f"seed{k}", None, molecules, device, trust, threshold, seed,
                                   log, quantity, first_look))
        names.append(Path(path).name if Path(path).name not in names else f"{Path(path).name} ({k})")
    return M.across_seeds(tables, names)


def make_report(capture, out=None, model=None, trust: bool | None = None, ablation_molecules: int | None = 1000,
                map_points: int | None = 2000, map_method: str = "umap", map_layers: list[str] | None = None,
                compare=None, threshold: float = M.THRESHOLD, device: str = "auto", seed: int = 0,
                controls: int = 5, command: str | None = None, utilisation: pd.DataFrame | None = None,
                quantity: str = "both", first_look: int | None = 64, recovery_steps: int | None = None,
                recovery_lr: float = 1e-3, necessity: list[tuple[str, str]] | None = None,
                seeds: list[str] | None = None, map_criterion: bool = False, log=print) -> dict:
    """Compute every metric of ``capture`` and write the report into ``out`` (default
    ``CAPTURE/report``). Returns the tables (DataFrames) and the paths written. ``utilisation``: a table
    :func:`irrepprobe.metrics.utilisation` already made for this capture and model (an experiment run's
    ``metrics/utilisation.csv``), used instead of measuring it again. ``quantity``: energy, forces or
    both (forces where the family computes them). ``first_look``: the sequential rule of
    :func:`irrepprobe.metrics.ablation` (None or 0: every ablation on every structure).
    ``recovery_steps``: also :func:`irrepprobe.metrics.recovery` with that fine-tuning budget per order
    (kept in ``out/recovery``, so a rerun resumes); ``necessity``: ``(orders, capture)`` pairs, captures of
    models trained without the orders over the same labelled structures. The verdict on orders rests on
    recovery where measured. ``seeds``: captures of other training runs of the same configuration over
    the same structures: their utilisation is measured too and the spread across seeds set beside this
    model's within-model intervals (:func:`irrepprobe.metrics.across_seeds`). ``map_criterion``: every
    block's map scored against its nulls (:func:`irrepprobe.metrics.maps.map_scores`) and cross-tabulated
    with the verdicts."""
    cap = capture if isinstance(capture, Capture) else load_capture(capture)
    out = Path(out) if out else cap.path / "report"
    figs, tabs = out / "figures", out / "tables"
    if not 0 < threshold < 1:
        raise IrrepprobeError(f"--threshold must be a fraction between 0 and 1, got {threshold:g}")
    if quantity not in M.QUANTITIES:
        raise IrrepprobeError(f"--quantity must be one of {', '.join(M.QUANTITIES)}, got {quantity!r}")
    if first_look is not None and first_look < 0:
        raise IrrepprobeError(f"--first-look must be 0 (off) or a number of structures, got {first_look}")
    if controls < 1:
        raise IrrepprobeError(f"--controls must be at least 1, got {controls}")
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
    with stage(f"control captures ({controls} untrained initialisations)"):
        ctls = _controls(cap, out, model, device, log, trust, controls)
        ctl = ctls[0] if ctls else None
    with stage("norms"):
        norms = M.norms(cap)
    with stage("utilisation (ablation, gradient x activation)"):
        if utilisation is None:
            util = _utilisation(cap, out, model, ablation_molecules, device, trust, threshold, seed, log,
                                quantity, first_look or None)
        else:
            util = utilisation.assign(parity=utilisation["parity"].fillna(""))
            util["used"] = M.verdicts(util, threshold)
            save_csv(util, tabs / "utilisation.csv")
    spread = None
    if seeds:
        with stage(f"utilisation of {len(seeds)} other seed(s)"):
            spread = _seeds(cap, util, seeds, out, ablation_molecules, device, trust, threshold, seed, log, quantity,
                            first_look or None)
    legs = []
    if recovery_steps:
        with stage(f"recovery (fine-tuning, {recovery_steps} steps per order and for the control)"):
            legs.append(M.recovery_of(cap, model, ablation_molecules, recovery_steps, recovery_lr, quantity=quantity,
                                      out=out / "recovery", trust=trust, device=device, threshold=threshold,
                                      seed=seed, log=log))
    for order, path in necessity or []:
        legs.append(M.necessity(cap, load_capture(path), order, threshold, seed=seed))
    legs = pd.concat(legs, ignore_index=True) if legs else None
    with stage("probes (ridge, every block x scalar label)"):
        inv = M.invariant_targets(cap)  # the own quantity (beyond composition) and the squared error
        own = inv.drop(columns=["squared error"], errors="ignore")
        Y = M.target_table(cap)
        Y = pd.concat([Y, own[[c for c in own.columns if c not in Y]]], axis=1)
        probes = _flag_controls(M.probe_scores(cap, Y, ctls, points=hidden, seed=seed), cap)
    with stage("probes (equivariant)"):
        eq = _flag_controls(M.equivariant_probe_scores(cap, M.equivariant_targets(cap), ctls, points=hidden, seed=seed), cap,
                            ridge=False)
    with stage("latent structure (kNN)"):
        knn = M.knn_scores(cap, inv, points=hidden, seed=seed)
    with stage(f"latent maps ({map_method})"):
        maps, map_rows = _maps(cap, inv, map_layers or hidden[-1:], map_points, map_method, seed)
        n_map = len(map_rows)
    map_table = None
    if map_criterion:
        with stage(f"map criterion ({map_method}, every block, nulls)"):
            map_table = map_scores(cap, inv[inv.columns[0]].to_numpy(), ctls, hidden, map_method, map_points, seed=seed)
    with stage("similarity (CKA)"):
        cka = M.cka_matrix(cap)
        cka_ctl = M.trained_vs_control(cap, ctl, seed) if ctl is not None else None
        cka_other = M.cka_matrix(cap, other) if other is not None else None

    own_col = own.columns[0]
    checks = M.denominator_checks(cap, util)
    copies = _same_target(Y, own_col)
    verdict = _verdict(util, probes, eq, hidden, threshold, copies, target, legs)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"norms": norms, "utilisation": util, "probes": probes, "probes_equivariant": eq,
              "latent_knn": knn, "verdict": verdict["table"], "verdict_thresholds": verdict["sweep"],
              "verdict_by_intervention": verdict["grid"]}
    for name, df in tables.items():
        save_csv(df, tabs / f"{name}.csv")
    save_csv(checks, tabs / "denominators.csv")
    if spread is not None:
        save_csv(spread, tabs / "seeds.csv")
    if map_table is not None:
        verdict["maps"] = cross_table(map_table, verdict["table"], verdict["orders"])
        save_csv(map_table, tabs / "map_criterion.csv")
        save_csv(verdict["maps"], tabs / "map_cross.csv")
    if legs is not None:
        save_csv(legs, tabs / "recovery.csv")
        save_csv(verdict["orders"], tabs / "orders.csv")
    save_csv(cka, tabs / "cka.csv", index=True)
    if cka_ctl is not None:
        save_csv(cka_ctl, tabs / "cka_trained_vs_untrained.csv")
    if cka_other is not None:
        save_csv(cka_other, tabs / "cka_compare.csv", index=True)

    model_name = Path(meta["model"]).name
    _, _, unit = M.own_quantity(cap)
    mae = float(np.abs(cap.errors).mean()) if "error" in cap.arrays else None
    head = (f"{model_name} ({meta['adapter']}), " + (f"target {target} ({unit})" if target else
            f"no label of its {meta['quantity']['name']}") + f", {meta['data']}, {meta['n_molecules']} structures")

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
                                               f"{n_map} of {meta['n_molecules']} molecules"), figs, "latent_maps")
    paths["cka"] = F.save(F.cka_heatmap(cka, f"debiased CKA between layers (composition regressed out)\n{head}"), figs, "cka")
    if cka_other is not None:
        paths["cka_compare"] = F.save(F.cka_heatmap(cka_other, f"debiased CKA: {model_name} vs "
                                                    f"{Path(other.meta['model']).name}",
                                                    xlabel=f"point of {other.path.name}"), figs, "cka_compare")

    with stage("chemiscope export"):
        paths["chemiscope"] = export_viewer(cap, out, maps, map_rows, _best_map(maps, knn, own_col),
                                            _vector_point(verdict["table"]), model=model, trust=trust, log=log)
    doc = _document(head, meta, mae, unit, verdict, norms, util, probes, eq, knn, cka_ctl, paths, own_col,
                    threshold, n_map, map_method, ablation_molecules, timings, command, checks, first_look, legs,
                    spread)
    save_csv(pd.DataFrame(timings), tabs / "timings.csv")
    md, page = doc.write(out)
    return {"out": out, "report_md": md, "report_html": page, "figures": paths, "tables": tables,
            "cka": cka, "verdict": verdict, "timings": pd.DataFrame(timings)}


def _flag_controls(probes: pd.DataFrame, cap: Capture, ridge: bool = True) -> pd.DataFrame:
    """``control_flag``: why a probe's controls cannot tell information from artefact (empty when they
    can): the untrained initialisations' or the control task's R2 far below 0, or (ridge) fewer
    structures than the block has features."""
    n = len(cap.arrays["index"])
    width = {(p, b): M.invariants(cap, p, b).shape[1] for p, b in probes[["point", "block"]].drop_duplicates().values} \
        if ridge and len(probes) else {}
    flags = []
    for r in probes.itertuples():
        why = []
        if np.isfinite(r.r2_untrained) and r.r2_untrained < CONTROL_FLOOR:
            why.append(f"untrained R2 {r.r2_untrained:.2f}")
        if np.isfinite(r.r2_control_task) and r.r2_control_task < CONTROL_FLOOR:
            why.append(f"control-task R2 {r.r2_control_task:.2f}")
        if width.get((r.point, r.block), 0) > n:
            why.append(f"{n} structures for {width[(r.point, r.block)]} features")
        flags.append("; ".join(why))
    return probes.assign(control_flag=flags)


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
    return maps, idx


def _best_map(maps, knn: pd.DataFrame, own: str) -> str | None:
    """The mapped block whose invariants predict the own quantity best (kNN R2): the viewer opens on it."""
    mapped = {(m["point"], m["block"]) for m in maps}
    rows = knn[(knn["target"] == own) & np.array([(p, b) in mapped for p, b in zip(knn["point"], knn["block"])])]
    if not len(rows):
        return f"{maps[0]['point']} {maps[0]['block']}" if maps else None
    r = rows.loc[rows["knn_r2"].idxmax()]
    return f"{r['point']} {r['block']}"


def _vector_point(table: pd.DataFrame) -> str | None:
    """The last point with an l = 1 block that something downstream reads (used or unused, not unreachable
    or degenerate): its pooled vectors are drawn as arrows."""
    ok = table[(table["l"] == 1) & table["verdict"].isin(["used", "unused"])]
    return ok["point"].iloc[-1] if len(ok) else None


def _same_target(Y: pd.DataFrame, own: str) -> list[str]:
    corr = Y.corr()[own].abs()
    return sorted(corr[corr >= SAME_TARGET_CORR].index)


SWEEP = (0.01, 0.02, 0.05, 0.10)


def _cell(row: pd.Series, t: float) -> str:
    """"used" / "unused" when every intervention agrees at threshold ``t``, else which find it unused."""
    row = row.dropna()
    low = [k for k, v in row.items() if v < t]
    return "unused" if len(low) == len(row) else "used" if not low else "used; unused under " + ", ".join(low)


def _interval(r) -> str:
    if not np.isfinite(r.scale_free_high):
        return "left out (no denominator)"
    n = f", n={int(r.structures)}" if "structures" in r._fields and np.isfinite(r.structures) else ""
    return f"{100 * r.scale_free:.1f}% [{100 * r.scale_free_low:.1f}, {100 * r.scale_free_high:.1f}{n}]{_worse(r)}"


def _worse(r) -> str:
    """A share of an error above 100%: the replacement is worse than the baseline the share is taken from."""
    if getattr(r, "score", "error") != "error" or not r.scale_free > 1:
        return ""
    return ", worse than zero forces" if getattr(r, "quantity", "") == "forces" else ", worse than the composition fit"


def _column(r, several: bool) -> str:
    return f"{r.intervention} ({r.quantity})" if several else r.intervention


def _leg_text(rows: pd.DataFrame) -> str:
    """One leg of one order: each quantity's scale-free interval (and raw, where it differs), the outcome."""
    parts = []
    for r in rows.itertuples():
        if not np.isfinite(r.scale_free_high) and not np.isfinite(r.raw_high):
            parts.append(f"{r.quantity}: no denominator")
            continue
        text = (f"{r.quantity} {100 * r.scale_free:.1f}% [{100 * r.scale_free_low:.1f}, {100 * r.scale_free_high:.1f}]"
                if np.isfinite(r.scale_free_high) else f"{r.quantity}")
        if r.score == "error":
            text += f" (raw {100 * r.raw:+.1f}% [{100 * r.raw_low:.1f}, {100 * r.raw_high:.1f}]){_worse(r)}"
        parts.append(text)
    outcome = rows["outcome"].iloc[0]
    return "; ".join(parts) + (f": {outcome}" if outcome else "")


def _orders(legs: pd.DataFrame) -> pd.DataFrame:
    """Per order: each leg's intervals and outcome side by side, the verdict and the leg it rests on
    (recovery where measured, else necessity, else dependence)."""
    control = legs[legs["leg"] == "control"]
    rows = []
    for order in [o for o in legs["order"].unique() if o != "none"]:
        row, mine, found = {"order": order}, legs[legs["order"] == order], {}
        for leg in ("dependence", "recovery", "necessity"):
            part = mine[mine["leg"] == leg]
            row[leg] = _leg_text(part) if len(part) else "not measured"
            if len(part):
                found[leg] = part["outcome"].iloc[0]
        if len(control) and "recovery" in found:
            row["fine-tuning alone (control)"] = _leg_text(control.assign(outcome=""))
        rests = next(leg for leg in ("recovery", "necessity", "dependence") if leg in found)
        row["verdict"], row["rests on"] = found[rests], rests
        if rests == "recovery" and found.get("necessity", found[rests]) != found[rests]:  # a short budget vs retraining
            row["verdict"] += f" (necessity: {found['necessity']})"
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict(util, probes, eq, hidden, threshold, copies, target, legs=None) -> dict:
    rows_all = util[util["point"].isin(hidden)]
    per_block = rows_all.drop_duplicates(["point", "block"])
    collapsed = (per_block["degenerate"].astype(bool) if "degenerate" in per_block else
                 pd.Series(False, index=per_block.index))
    unreachable = per_block[~per_block["reachable"] & ~collapsed]  # a collapsed block is degenerate, not wired off
    unused = per_block[per_block["reachable"] & ~per_block["used"] & ~collapsed]
    drop = orders_to_drop(util, threshold, hidden)
    orders = _orders(legs) if legs is not None else None
    if legs is not None and (legs["leg"] == "recovery").any():
        drop = M.dispensable(legs)  # the verdict on orders rests on recovery where measured
    both = pd.concat([probes, eq], ignore_index=True)
    both = both[both["point"].isin(hidden) & ~both["target"].isin(copies) & (both["target"] != target)]
    info = both[(both["r2"] >= INFO_R2) & (both["selectivity"] >= INFO_SELECTIVITY) & both["above_controls"]
                & (both["control_flag"].fillna("") == "")]
    best = info.sort_values("selectivity", ascending=False).groupby("target", sort=False).head(1)
    rows = []
    several = "quantity" in util and util["quantity"].nunique() > 1
    dependence = dict(zip(zip(util["point"], util["block"]), M.outcomes(util, threshold)))
    for r in per_block.itertuples():
        carried = info[(info["point"] == r.point) & (info["block"] == r.block)]["target"].tolist()
        row = {"point": r.point, "block": r.block, "l": r.l}
        for k in rows_all[(rows_all["point"] == r.point) & (rows_all["block"] == r.block)].itertuples():
            row[_column(k, several)] = _interval(k)
        row["verdict"] = ("degenerate (negligible norms and gradients)" if getattr(r, "degenerate", False) else
                          "unreachable by construction" if not r.reachable else
                          "undetermined (no denominator)" if dependence[(r.point, r.block)] == "no denominator" else
                          "used" if r.used else "unused")
        row["dependence"] = dependence[(r.point, r.block)]
        row["holds information on (probes)"] = ", ".join(carried)
        rows.append(row)
    joint = util[util["point"] == "all"]
    grid = util[(util["point"].isin(hidden) | (util["point"] == "all")) & util["reachable"]]
    by = grid.pivot_table(index=["point", "block"], columns="intervention", values="scale_free_high", sort=False,
                          aggfunc="max")  # the larger over the quantities scored: unused only if unused for each
    by_threshold = pd.DataFrame({f"{100 * t:g}%": [_cell(row, t) for _, row in by.iterrows()] for t in SWEEP},
                                index=by.index).reset_index()
    sweep = []
    for t in SWEEP:
        used = M.verdicts(util, t)
        blocks = util[util["point"].isin(hidden) & util["reachable"] & ~used].drop_duplicates(["point", "block"])
        sweep.append({"threshold": f"{100 * t:g}%", "unused blocks": ", ".join(f"{p} {b}" for p, b in
                                                                           blocks[["point", "block"]].values) or "none",
                      "orders to drop": ", ".join(f"l={l}" for l in orders_to_drop(util, t, hidden)) or "none"})
    return {"unused": unused[["point", "block"]].values.tolist(),
            "unreachable": unreachable[["point", "block"]].values.tolist(),
            "degenerate": per_block[collapsed][["point", "block"]].values.tolist(),
            "used": per_block[per_block["used"] & ~collapsed][["point", "block"]].values.tolist(),
            "drop": drop, "best_other": best,
            "table": pd.DataFrame(rows), "copies": copies, "orders": orders, "sweep": pd.DataFrame(sweep), "grid": by_threshold,
            "joint": pd.DataFrame([{"order": r.block, "intervention": r.intervention,
                                    **({"quantity": r.quantity} if several else {}),
                                    "scale-free utilisation": _interval(r)} for r in joint.itertuples()])}


def _spread_text(spread: pd.DataFrame) -> str:
    n = int(spread["seeds"].max())
    ratio = spread["spread_ratio"].replace([np.inf, -np.inf], np.nan).dropna()
    return (f"The scale-free utilisation of {n} training runs of this configuration (this model first), each measured "
            "on the same structures: their mean with a Student t interval over seeds, their standard deviation "
            "(`sd`), and `spread_ratio`, that deviation over this model's within-model standard error (its "
            "bootstrap interval over structures). " + (f"Median spread ratio {ratio.median():.1f} (largest "
            f"{ratio.max():.1f}): " + ("the within-model intervals understate how far a retrained model moves; "
            "read a verdict near the threshold with the seeds' interval." if ratio.median() > 2 else
            "the seeds agree about as well as the within-model intervals say.") if len(ratio) else ""))


def _legs_text(legs: pd.DataFrame, threshold: float) -> str:
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


def _describe(q: str, kind: str, meta) -> str:
    if q == "forces":
        return "forces (error against the data's per-atom forces)" if kind == "error" else \
            "forces (shift of the model's own forces, relative to their root mean square)"
    return (f"{q} (error against {meta['target']})" if kind == "error" else
            f"{q} (shift of the model's own prediction" + (" per atom" if meta["quantity"].get("per_atom") else "")
            + ", relative to its spread)")


def _header(meta, util) -> list[str]:
    """What was measured, in a few lines: data, the function (head or fidelity), quantities, equivariance."""
    from ..capture.equivariance import equivariance_line

    n, periodic = meta["n_molecules"], meta.get("periodic")
    lines = [f"Data: {meta['data']}, {n} structures" + (
        "" if periodic is None else f", {periodic} of them periodic (cell and pbc)" if periodic else
        ", none periodic") + "."]
    heads = meta.get("heads") or []
    if len(heads) > 1:
        word = "fidelity (modality)" if meta["adapter"] == "sevenn" else "head"
        lines.append(f"Function measured: {word} {meta.get('head')} of {', '.join(map(str, heads))}.")
    if "quantity" in util:
        scored = util.drop_duplicates("quantity")
        text = "; ".join(_describe(r.quantity, r.score, meta) for r in scored.itertuples())
        lines.append(f"Quantities scored: {text}" + ("" if (util["quantity"] == "forces").any() else
                                                     " (no forces: not computed by this family, or not asked for)")
                     + ".")
    eq = meta.get("equivariance", "absent")
    lines.append("Equivariance: " + ("not checked (a capture from before the check)" if eq == "absent" else
                                     "not checked (--check-equivariance 0)" if eq is None else equivariance_line(eq))
                 + ".")
    return lines


def _warnings(meta, util, checks) -> list[str]:
    """Lines that come before any verdict: a model that is not equivariant, denominators that degenerate."""
    out = []
    eq = meta.get("equivariance")
    if isinstance(eq, dict) and not eq.get("passed", True):
        out.append("**The model failed the equivariance check**: which irreps it uses is not a meaningful question "
                   "while rotating a structure changes its output or its features' invariants; read every number "
                   "below with that in mind.")
    for r in checks.itertuples():
        out.append(f"**{r.check}**" + (f" ({r.quantity})" if isinstance(r.quantity, str) else "") + f": {r.message}.")
    if len(util) and not np.isfinite(util["scale_free_high"]).any():
        out.append("**No verdict**: no quantity has a denominator on this data, so no block is called used or "
                   "unused and no order is proposed for pruning.")
    return out


def _rests_on(util) -> str:
    if "quantity" not in util:
        return "dependence: this trained checkpoint with each block replaced (ablation)"
    ok = [q for q, v in util.groupby("quantity", sort=False)["scale_free_high"] if np.isfinite(v).any()]
    out = [q for q in util["quantity"].unique() if q not in ok]
    return ("dependence: this trained checkpoint with each block replaced (ablation), scored on "
            + (" and ".join(ok) if ok else "nothing") + (f"; {', '.join(out)} left out (see above)" if out else "")
            + "; a block is unused only when it is unused for each quantity scored")


LEG_WORDS = {"dependence": "this checkpoint with the order zeroed at every point",
             "recovery": "the damage left after fine-tuning with the order masked, beyond what the same "
                         "fine-tuning does to the unmasked model",
             "necessity": "a model retrained from scratch without the order"}


def _order_lines(verdict, util, legs, threshold) -> list[str]:
    """One line per order l > 0: the verdict, the leg it rests on with its interval, the other legs' outcomes."""
    lines = []
    if verdict.get("orders") is not None:
        for r in verdict["orders"].to_dict("records"):
            rests = r["rests on"]
            others = [f"{leg}: {legs[(legs['order'] == r['order']) & (legs['leg'] == leg)]['outcome'].iloc[0]}"
                      for leg in LEGS if leg != rests and r.get(leg, "not measured") != "not measured"]
            text = r[rests].rsplit(": ", 1)[0] if r[rests].endswith(f": {r['verdict'].split(' (')[0]}") else r[rests]
            lines.append(f"**{r['order']}: {r['verdict'].split(' (')[0]}**, resting on {rests} ({LEG_WORDS[rests]}): "
                         f"{text}" + (f". Beside it, {'; '.join(others)}" if others else "") + ".")
        return lines
    joint = util[(util["point"] == "all") & (util["intervention"] != "removed")]
    if not len(joint):
        return lines
    joint = joint.assign(outcome=M.outcomes(joint, threshold))
    for order, rows in joint.groupby("block", sort=False):
        worst = next(rows.loc[[rows["scale_free"].idxmax() if rows["scale_free"].notna().any() else rows.index[0]]]
                     .itertuples())
        lines.append(f"**{order}: this checkpoint depends on it: {rows['outcome'].iloc[0]}** (dependence: the order "
                     f"replaced at every point at once, {worst.intervention}"
                     + (f", {worst.quantity}" if "quantity" in rows else "") + f": {_interval(worst)}). Whether "
                     "the architecture needs it was not measured: `--recovery` fine-tunes without it.")
    return lines


def _summary(meta, verdict, util, legs, spread, threshold) -> list[str]:
    """The first screen: which orders the model needs (and on which leg that rests), which blocks it uses,
    what a pruning step would drop, how sure, and what blocks hold (information) as against use."""
    used, unused = verdict["used"], verdict["unused"]
    names = lambda blocks: ", ".join(f"{p} {b}" for p, b in blocks)  # noqa: E731
    lines = _order_lines(verdict, util, legs, threshold)
    lines.append(f"**Blocks** (dependence, this checkpoint, threshold {threshold:.0%}): {len(used)} of "
                 f"{len(used) + len(unused)} reachable blocks used" + (f"; unused: {names(unused)}" if unused else "")
                 + (f"; unreachable by construction (nothing downstream reads them): {names(verdict['unreachable'])}"
                    if verdict["unreachable"] else "")
                 + (f"; degenerate (negligible norms and gradients): {names(verdict['degenerate'])}"
                    if verdict["degenerate"] else "") + ".")
    on = ("recovery" if legs is not None and (legs["leg"] == "recovery").any() else "dependence")
    model = Path(meta["model"]).name
    drop = verdict["drop"]
    lines.append("**A pruning step would drop**: " + (
        ", ".join(f"l={l}" for l in drop) + f" (resting on {on}): `irrepprobe prune {model} --drop-l "
        f"{drop[0]}" + (f" --format {meta['adapter']} --trust" if meta["adapter"] != "irrepprobe" else "")
        + " --data ...` writes the smaller model and compares it" if drop else
        f"nothing (resting on {on}: no order is dispensable"
        + ("; an undecided one needs a longer fine-tuning budget or more structures" if on == "recovery" else
           "; dependence is about this checkpoint, `--recovery` asks whether the architecture needs an order")
        + ")") + ".")
    n = int(util["structures"].max()) if "structures" in util else int(util["molecules"].iloc[0])
    if spread is not None:
        ratio = spread["spread_ratio"].replace([np.inf, -np.inf], np.nan).dropna()
        sure = (f"{int(spread['seeds'].max())} training runs measured: the spread across them is a median "
                f"{ratio.median():.1f}x this model's within-model standard error (see Across seeds)" if len(ratio) else
                f"{int(spread['seeds'].max())} training runs measured (see Across seeds)")
    else:
        sure = ("these intervals are within this one model: a retrained model can move more (in the Lee study a "
                "median 8x the bootstrap standard error); `--seeds` sets other training runs beside them")
    lines.append(f"**How sure**: 95% paired bootstrap intervals over up to {n} structures; {sure}.")
    best = verdict["best_other"]
    status = {(r["point"], r["block"]): r["verdict"] for r in verdict["table"].to_dict("records")}
    use = {"used": "used", "unused": "unused: held, not used"}
    held = [f"{r.target} in {r.point} {r.block} (R2 {r.r2:.2f}, selectivity {r.selectivity:+.2f}; the block is "
            + use.get(status.get((r.point, r.block), ""), status.get((r.point, r.block), "?").split(" (")[0]
                      + ": held, never used") + ")" for r in best.itertuples()]
    if verdict.get("maps") is not None:
        m = verdict["maps"]
        col = "map looks structured (components)"
        reach = m[m["verdict"].isin(["used", "unused"])]
        agree = reach[reach[col] == (reach["verdict"] == "used")]
        lines.append(f"**Lee et al.'s map criterion**: {int(m[col].sum())} of {len(m)} blocks' maps look structured "
                     f"(raw components, against permuted, untrained and composition nulls); on reachable blocks it "
                     f"agrees with dependence for {len(agree)} of {len(reach)}.")
    lines.append("**Information held is not use**: probes say what a block holds, ablation and recovery what the "
                 "model uses; held beyond the model's own target: " + ("; ".join(held) if held else "nothing") + ".")
    return lines


def _probe_warnings(probes: pd.DataFrame) -> list[str]:
    flagged = probes[probes["control_flag"].fillna("") != ""] if "control_flag" in probes else probes.iloc[:0]
    if not len(flagged):
        return []
    return [f"**{len(flagged)} probe rows have broken controls** ({flagged['control_flag'].iloc[0]}, ...): their "
            "selectivity is not a finding, and they count for nothing in the summary."]


def _document(head, meta, mae, unit, verdict, norms, util, probes, eq, knn, cka_ctl, paths, own_col, threshold,
              n_map, map_method, ablation_molecules, timings, command, checks, first_look, legs=None,
              spread=None) -> Document:
    doc = Document(f"irrepprobe report: {head}")
    doc.text(meta["model_summary"] + ".")
    doc.heading("Summary")
    first = _warnings(meta, util, checks) + _probe_warnings(probes)
    if first:
        doc.text("Read this first:")
        doc.bullets(first)
    doc.bullets(_summary(meta, verdict, util, legs, spread, threshold))
    doc.figure(paths["utilisation"], "Norm share, ablation utilisation (dependence) and probe selectivity "
                                     f"(information) for {own_col}, per layer and block")
    doc.figure(paths["maps"], "Latent maps per block coloured by the own quantity and "
                              + ("squared error" if mae is not None else "size"))
    if "chemiscope" in paths:
        doc.text(f"Explore the structures, maps, per-order norms and ablation shifts interactively: "
                 f"`{paths['chemiscope'].name}` opens at https://chemiscope.org (drop the file on the page) or, in "
                 f"Jupyter, with `chemiscope.show_input(\"{paths['chemiscope'].name}\")`.")
    doc.fold("What was measured")
    doc.bullets(_header(meta, util))
    sha = meta.get("model_sha256")
    doc.text(f"Capture of {meta['model']}" + (f" (sha256 {sha[:12]})" if sha else "") + f" through the "
             f"{meta['adapter']} adapter over {meta['n_molecules']} structures of {meta['data']}, created "
             f"{meta['created']}; " + (f"MAE of the model against {meta['target']}: {mae:.4f} {unit}." if mae is not None
             else f"the data holds no label of the model's {meta['quantity']['name']}, so utilisation measures how "
             "far ablation moves the model's own prediction."))
    doc.fold("Verdict in detail")
    unused = [f"{p} {b}" for p, b in verdict["unused"]]
    unreachable = [f"{p} {b}" for p, b in verdict["unreachable"]]
    best = verdict["best_other"]
    doc.bullets([
        "What it rests on: " + _rests_on(util) + (f"; {int(spread['seeds'].max())} seeds' spread in 'Across seeds'"
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
             "not whether the architecture needs the block. A share above 100% means the ablated model is worse "
             "than the composition fit (or, for forces, than zero forces).")
    if verdict.get("orders") is not None:
        doc.text("Orders: does the architecture need each one, or only this checkpoint? " + _legs_text(legs, threshold))
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
             + ("Forces are scored beside the energy: " + _describe("forces", util.loc[util["quantity"] == "forces",
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
    doc.table(util.drop(columns=["molecules"]), "tables/utilisation.csv")
    if spread is not None:
        doc.fold("Across seeds")
        doc.text(_spread_text(spread))
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
