"""The costly stages of a capture report, each reused from its output directory when an earlier report
there measured the same thing: the untrained control captures, utilisation (this model's and other
seeds'), and the latent maps."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as M
from ..capture import Capture, capture_untrained, load_capture, model_of, structures_of
from ..errors import IrrepprobeError
from ..fileio import save_csv, save_json
from ..runtime import resolve_device

# gradient x activation (a first-order diagnostic beside the ablations) on the first so many structures
ATTRIBUTION_MOLECULES = 128
# the fewest structures a report can score: the kNN scores run 5-fold probes (10 structures at least) on
# random 80% subsamples, round(0.8 n) >= 10
MIN_STRUCTURES = 12
# the fewest structures a 2-D map can be drawn from (UMAP's spectral start needs 4), and scored from
# (--map-criterion: a 5-fold kNN probe of the map)
MIN_MAP_POINTS, MIN_SCORED_MAP_POINTS = 4, 10


def check_sources(cap: Capture, model=None, what: str = "") -> None:
    """The model file and data file ``cap`` was taken with (or ``model``, a moved copy) are where it says
    and unchanged, as :func:`~irrepprobe.capture.model_of` and :func:`~irrepprobe.capture.structures_of`
    will ask later: checked without loading either."""
    from ..data.structures import sha256

    source = model or cap.meta["model"]
    path = Path(source)
    if ":" not in str(source) and (path.suffix or path.is_absolute() or path.exists()):  # a file, as model_of
        if not path.exists():
            raise IrrepprobeError(f"--model {path}: no such file" if model else
                                  f"{what}the model of capture {cap.path} is not at {path}"
                                  + ("" if what else ": pass --model"))
        if path.is_dir():
            raise IrrepprobeError(f"{what}{path} is a directory; give the model file")
        if cap.meta.get("model_sha256") and sha256(path) != cap.meta["model_sha256"]:
            raise IrrepprobeError(f"{what}{path} is not the model capture {cap.path} was taken from (its sha256 "
                                  "differs)")
    data = str(cap.meta.get("data") or "")
    if data and not data.startswith("qm9"):
        path = Path(data)
        if not path.is_file():
            raise IrrepprobeError(f"{what}the data file of capture {cap.path} is not at {path}")
        if cap.meta.get("data_sha256") and sha256(path) != cap.meta["data_sha256"]:
            raise IrrepprobeError(f"{what}{path} is not the data file capture {cap.path} was taken over (its sha256 "
                                  "differs)")


def same_data(a: Capture, b: Capture) -> bool:
    """Whether two captures' structure indices point into the same source: QM9 (any split: its indices are
    into the one cache) or the same file (by content where both know it, else by path)."""
    da, db = str(a.meta.get("data") or ""), str(b.meta.get("data") or "")
    if da.startswith("qm9") or db.startswith("qm9"):
        return da.startswith("qm9") and db.startswith("qm9")
    ha, hb = a.meta.get("data_sha256"), b.meta.get("data_sha256")
    if ha and hb:
        return ha == hb
    return Path(da).resolve() == Path(db).resolve()


def _capture_of(flag: str, path) -> Capture:
    try:
        return load_capture(path)
    except IrrepprobeError as e:
        raise IrrepprobeError(f"{flag} {path}: {e}") from None


def check_arguments(cap: Capture, out: Path, model=None, trust=None, ablation_molecules: int | None = 1000,
                    map_points: int | None = 2000, map_method: str = "umap", map_layers=None, compare=None,
                    threshold: float = M.THRESHOLD, seed: int = 0, controls: int = 5, quantity: str = "both",
                    first_look: int | None = 64, recovery_steps: int | None = None, recovery_lr: float = 1e-3,
                    necessity=None, seeds=None, map_criterion: bool = False, device: str = "auto") -> Capture | None:
    """Every argument of :func:`~irrepprobe.study.make_report` and every precondition of its later stages,
    checked before any work (one line each, naming the option): ranges, choices, the capture's size, the
    family's forces, the other captures (``compare``, ``seeds``, ``necessity``) and, for recovery, a model
    that can be fine-tuned. Returns the loaded ``compare`` capture (None without one)."""
    import math

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
    if map_method == "phate":
        import importlib.util

        if importlib.util.find_spec("phate") is None:
            raise IrrepprobeError("--map-method phate needs the phate package: pip install phate")
    if seed < 0:
        raise IrrepprobeError(f"--seed must be 0 or a positive integer, got {seed}")
    if ablation_molecules is not None and ablation_molecules < 1:
        raise IrrepprobeError(f"--ablation-molecules must be 0 (all) or a positive number, got {ablation_molecules}")
    low = MIN_SCORED_MAP_POINTS if map_criterion else MIN_MAP_POINTS
    if map_points is not None and map_points < low:
        raise IrrepprobeError(f"--map-points must be 0 (all) or at least {low}"
                              + (" with --map-criterion" if map_criterion else "") + f", got {map_points}")
    if out.exists() and not out.is_dir():
        raise IrrepprobeError(f"--out {out} is a file, not a directory")
    n = len(cap.arrays["index"])
    if n < MIN_STRUCTURES:
        raise IrrepprobeError(f"capture {cap.path} holds {n} structure{'s' if n != 1 else ''}; a report needs at "
                              f"least {MIN_STRUCTURES} (its probes are 5-fold cross-validated): capture more "
                              "(irrepprobe capture --subset N)")
    molecules = n if ablation_molecules is None else min(ablation_molecules, n)
    if quantity == "forces":
        from ..adapters import get_adapter

        adapter = get_adapter(cap.meta["adapter"])
        if not adapter.has_forces:
            raise IrrepprobeError(f"--quantity forces: the {adapter.name} family of this capture's model computes "
                                  "no forces; use --quantity energy")
    for p in map_layers or []:
        if p not in cap.points:
            raise IrrepprobeError(f"--map-layers: {p!r} is not a captured point; points: {', '.join(cap.points)}")
    check_sources(cap, model)
    other = None
    if compare:
        other = _capture_of("--compare", compare)
        shared = len(np.intersect1d(cap.arrays["index"], other.arrays["index"]))
        if shared < 4 or not same_data(cap, other):
            raise IrrepprobeError(f"--compare {compare}: it is not over the same structures as {cap.path} "
                                  f"({other.meta.get('data')} vs {cap.meta.get('data')}, {shared} shared); "
                                  "capture both models over the same data")
    for path in seeds or []:
        flag = f"--seeds {path}"
        other_seed = _capture_of("--seeds", path)
        if not np.array_equal(other_seed.arrays["index"][:molecules], cap.arrays["index"][:molecules]) \
                or not same_data(cap, other_seed):
            raise IrrepprobeError(f"{flag} is not over the same structures as {cap.path}")
        if set(M.hidden_points(other_seed)) != set(M.hidden_points(cap)):
            raise IrrepprobeError(f"{flag} has other points than {cap.path}: not the same architecture")
        check_sources(other_seed, None, f"{flag}: ")
    captured = sorted({int(b["l"]) for p in M.hidden_points(cap) for b in cap.meta["points"][p]["blocks"]})
    for order, path in necessity or []:
        flag = f"--necessity {order}:{path}"
        ls = [x.strip() for x in str(order).removeprefix("l=").split(",")]
        if not str(order).startswith("l=") or not all(x.isdigit() for x in ls):
            raise IrrepprobeError(f"{flag}: the orders are written l=1 or l=1,2")
        bad = [int(x) for x in ls if int(x) == 0 or int(x) not in captured]
        if bad:
            raise IrrepprobeError(f"{flag}: l={bad[0]} is not an order above 0 of the captured blocks "
                                  f"({', '.join(f'l={l}' for l in captured if l > 0) or 'none'})")
        pruned = _capture_of("--necessity", path)
        for c in (cap, pruned):
            if "error" not in c.arrays:
                raise IrrepprobeError(f"{flag}: capture {c.path} holds no errors (no label of the model's quantity): "
                                      "necessity compares trained models' errors")
        if not np.array_equal(cap.arrays["index"], pruned.arrays["index"]) or cap.meta["target"] != pruned.meta["target"]:
            raise IrrepprobeError(f"{flag}: {path} is not over the same structures and target as {cap.path}")
    if recovery_steps is not None:
        if recovery_steps < 1:
            raise IrrepprobeError(f"--recovery-steps must be at least 1, got {recovery_steps}")
        if not (math.isfinite(recovery_lr) and recovery_lr > 0):
            raise IrrepprobeError(f"--recovery-lr must be a positive learning rate, got {recovery_lr:g}")
        if molecules < 3:
            raise IrrepprobeError(f"--recovery fine-tunes on some structures and scores the rest: it needs at least "
                                  f"3, and --ablation-molecules gives {molecules}")
        from ..capture import model_of
        from ..runtime import resolve_device

        loaded = model_of(cap, model, trust=trust, device=resolve_device(device))
        if not any(p.requires_grad for p in loaded.module.parameters()):
            raise IrrepprobeError(f"--recovery fine-tunes the model, and this {loaded.adapter.name} model has no "
                                  "trainable parameters")
    return other


def control_captures(cap: Capture, out: Path, model, device, log, trust=None, n: int = 5) -> list[Capture]:
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


def cached_utilisation(cap: Capture, out: Path, model, molecules, device, trust, threshold, seed, log, quantity,
                       first_look) -> pd.DataFrame:
    """Utilisation under every intervention, reused from ``out`` when an earlier report there measured
    the same model on the same structures with the same settings (``tables/utilisation.json`` says so):
    it is the costly stage, and a report rerun for its other parts should not redo it."""
    key = {"model_sha256": cap.meta.get("model_sha256"), "data_sha256": cap.meta.get("data_sha256"),
           "index_sha256": hashlib.sha256(np.ascontiguousarray(cap.arrays["index"]).tobytes()).hexdigest(),
           "points": M.hidden_points(cap), "molecules": molecules, "interventions": list(M.INTERVENTIONS),
           "seed": seed, "head": cap.meta.get("head"), "quantity": quantity, "first_look": first_look,
           "threshold": threshold, "table_version": 5}  # 5: the edits each row rests on
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


def seed_utilisation(cap, util, seeds, out, molecules, device, trust, threshold, seed, log, quantity, first_look):
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
        tables.append(cached_utilisation(other, out / "seeds" / f"seed{k}", None, molecules, device, trust, threshold,
                                         seed, log, quantity, first_look))
        names.append(Path(path).name if Path(path).name not in names else f"{Path(path).name} ({k})")
    return M.across_seeds(tables, names)


def block_maps(cap, inv, points, n_points, method, seed):
    """2-D maps (``method``) of every block's pooled invariants at ``points`` over a subsample of at most
    ``n_points`` structures, coloured by the own quantity and the squared error (or size); and the rows."""
    idx = M.subsample(len(cap.outputs), n_points, seed)
    tcol = inv.columns[0]
    _, _, unit = M.own_quantity(cap)
    second = (("error", np.log10(inv["squared error"].to_numpy()[idx] + 1e-12), f"log10 squared error ({unit}^2)",
               "magma_r") if "squared error" in inv else
              ("size", cap.arrays["n_atoms"][idx].astype(float), "atoms per structure", "magma_r"))
    maps = []
    for p in points:
        for b in cap.blocks(p):
            xy = M.latent_map(M.invariants(cap, p, b)[idx], method, seed)
            maps.append({"point": p, "block": b, "xy": xy, "colours": [
                ("target", inv[tcol].to_numpy()[idx], f"{tcol} beyond composition ({unit})", "viridis"), second]})
    return maps, idx
