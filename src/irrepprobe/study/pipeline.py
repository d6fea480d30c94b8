"""``irrepprobe report``: a capture in, a directory out (report.md, report.html, figures/, tables/). The
pipeline: checks its arguments, runs every stage (timed; the costly ones reused from ``out``), decides
the verdict (:mod:`irrepprobe.metrics.verdicts`), saves the tables, and has :mod:`irrepprobe.report`
draw the figures and write the document."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as M
from ..capture import Capture, load_capture
from ..fileio import save_csv
from ..metrics.maps import cross_table, map_scores
from ..metrics.verdicts import flag_controls, same_target, verdict_tables
from ..report.page import document, draw, title
from .stages import block_maps, cached_utilisation, check_arguments, control_captures, seed_utilisation
from .viewer import best_map, export as export_viewer, vector_point


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
    tabs = out / "tables"
    # every argument and every later stage's precondition, before any work (one line naming the option)
    other = check_arguments(cap, out, model, trust, ablation_molecules, map_points, map_method, map_layers, compare,
                            threshold, seed, controls, quantity, first_look, recovery_steps, recovery_lr, necessity,
                            seeds, map_criterion, device)
    hidden = M.hidden_points(cap)
    timings: list[dict] = []

    @contextmanager
    def stage(name):
        t0 = time.time()
        yield
        timings.append({"stage": name, "seconds": round(time.time() - t0, 2)})
        log(f"  {name}: {timings[-1]['seconds']:.1f} s")

    meta, target = cap.meta, cap.meta["target"]
    with stage(f"control captures ({controls} untrained initialisations)"):
        ctls = control_captures(cap, out, model, device, log, trust, controls)
        ctl = ctls[0] if ctls else None
    with stage("norms"):
        norms = M.norms(cap)
    with stage("utilisation (ablation, gradient x activation)"):
        if utilisation is None:
            util = cached_utilisation(cap, out, model, ablation_molecules, device, trust, threshold, seed, log,
                                quantity, first_look or None)
        else:
            util = utilisation.assign(parity=utilisation["parity"].fillna(""))
            util["used"] = M.verdicts(util, threshold)
            save_csv(util, tabs / "utilisation.csv")
    spread = None
    if seeds:
        with stage(f"utilisation of {len(seeds)} other seed(s)"):
            spread = seed_utilisation(cap, util, seeds, out, ablation_molecules, device, trust, threshold, seed, log, quantity,
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
        probes = flag_controls(M.probe_scores(cap, Y, ctls, points=hidden, seed=seed), cap)
    with stage("probes (equivariant)"):
        eq = flag_controls(M.equivariant_probe_scores(cap, M.equivariant_targets(cap), ctls, points=hidden, seed=seed), cap,
                            ridge=False)
    with stage("latent structure (kNN)"):
        knn = M.knn_scores(cap, inv, points=hidden, seed=seed)
    with stage(f"latent maps ({map_method})"):
        maps, map_rows = block_maps(cap, inv, map_layers or hidden[-1:], map_points, map_method, seed)
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
    copies = same_target(Y, own_col)
    verdict = verdict_tables(util, probes, eq, hidden, threshold, copies, target, legs)
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

    _, _, unit = M.own_quantity(cap)
    mae = float(np.abs(cap.errors).mean()) if "error" in cap.arrays else None
    head = title(meta, target, unit)
    paths = draw(out, head, meta, mae, norms, util, probes, hidden, own_col, threshold, maps, map_method, n_map, cka,
                 cka_other, other)
    with stage("chemiscope export"):
        paths["chemiscope"] = export_viewer(cap, out, maps, map_rows, best_map(maps, knn, own_col),
                                            vector_point(verdict["table"]), model=model, trust=trust, log=log)
    doc = document(head, meta, mae, unit, verdict, norms, util, probes, eq, knn, cka_ctl, paths, own_col,
                   threshold, n_map, map_method, ablation_molecules, timings, command, checks, first_look, legs,
                   spread)
    save_csv(pd.DataFrame(timings), tabs / "timings.csv")
    md, page = doc.write(out)
    return {"out": out, "report_md": md, "report_html": page, "figures": paths, "tables": tables,
            "cka": cka, "verdict": verdict, "timings": pd.DataFrame(timings)}
