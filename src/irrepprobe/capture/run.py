"""Capture any model (through its adapter) over any structures into a capture directory."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..adapters import Loaded, load_model, passes
from ..data.structures import Structures, qm9_structures, read_structures, sha256
from ..errors import IrrepprobeError
from ..progress import progress
from ..runtime import resolve_device, versions
from .hooks import Recorder
from .points import choose_points  # noqa: F401  (re-exported)
from .store import Capture, load_capture, summary_table, write_capture

QM9_SPLITS = ("train", "val", "test")

# A label "on another reference" (e.g. QM9's B3LYP total energies given to a PBE potential): its difference
# from the model's prediction is mostly a per-element offset. All three must hold:
# - the least-squares fit of (label - prediction) on element counts leaves at most OFFSET_SHARE of the raw
#   mean absolute difference. Measured: SevenNet-0 (PBE) against QM9's B3LYP u0 leaves 3e-5 of it, against
#   u0_atom 1.2e-2; a model's errors on its own label are mostly not per element (the example checkpoint
#   on 200 test molecules' u0_atom keeps 0.6 of them), so 0.1 sits far from both;
# - the raw mean absolute difference is at least RAW_OVER_SPREAD of the label's mean absolute deviation:
#   a model of the label's own quantity does far better than predicting the label's mean (the example
#   checkpoint: 0.02), where another reference does not (SevenNet-0 against u0: 6, u0_atom: 2.3). A
#   small consistent offset on a model that is otherwise right stays the model's own error;
# - and the prediction follows the label beyond composition: what the per-element fit leaves is at most
#   BEYOND_COMPOSITION of what a fit on element counts leaves of the label itself. A model that learned
#   nothing of the label (an untrained one, whose errors are mostly composition too) leaves all of it
#   (the example architecture untrained: 1.27); another reference leaves about a third (SevenNet-0
#   against QM9's B3LYP energies, 300 test molecules: 0.35; against EMT energies of Cu cells: 0.31).
OFFSET_SHARE = 0.1
RAW_OVER_SPREAD = 0.5
BEYOND_COMPOSITION = 0.6
# structures beyond the fit's free parameters (one per independent element count) needed before the
# residual says anything: with fewer, a per-element fit follows any difference and leaves nothing.
REFERENCE_MIN_DOF = 5


def resolve_data(spec: str | None, model: Loaded, subset: int | None = None, cache_dir=None) -> Structures:
    """``qm9`` / ``qm9:SPLIT`` (the model's own split when it has one, else QM9's seed-0 80/10/10 split;
    ``qm9`` alone is ``qm9:test``), or any file ASE reads; the first ``subset`` structures of it."""
    if subset is not None and subset < 1:
        raise IrrepprobeError(f"--subset must be a positive number of structures, got {subset}")
    spec = spec or "qm9:test"
    if spec == "qm9" or spec.startswith("qm9:"):
        from ..data import load_qm9, make_split

        split = spec.partition(":")[2] or "test"
        if split not in QM9_SPLITS:
            raise IrrepprobeError(f"unknown QM9 split {split!r}; valid: {', '.join(QM9_SPLITS)} (e.g. qm9:test)")
        qm9 = load_qm9(cache_dir)
        own = model.info.get("split")
        indices = own[split] if own else make_split(len(qm9), seed=0)[split]
        if subset is not None:
            if subset > len(indices):
                raise IrrepprobeError(f"--subset {subset} is more than the {len(indices)} molecules of the {split} split")
            indices = indices[:subset]
        if len(indices) == 0:
            raise IrrepprobeError(f"the {split} split of {'the model' if own else 'QM9'} is empty: nothing to capture")
        return qm9_structures(qm9, indices, source=f"qm9:{split}")
    structures = read_structures(spec)
    if subset is not None and subset > len(structures):
        raise IrrepprobeError(f"--subset {subset} is more than the {len(structures)} structures in {spec}")
    return structures.take(np.arange(subset)) if subset is not None else structures


def structures_of(cap: Capture, cache_dir=None) -> Structures:
    """The structures a capture was taken over, rebuilt from its source (refused if the file changed)."""
    source, rows = cap.meta["data"], cap.arrays["index"]
    if source.startswith("qm9"):
        from ..data import load_qm9

        return qm9_structures(load_qm9(cache_dir), torch.as_tensor(rows), source=source)
    path = Path(source)
    if not path.exists():
        raise IrrepprobeError(f"the data file of capture {cap.path} is not at {path}")
    if cap.meta.get("data_sha256") and sha256(path) != cap.meta["data_sha256"]:
        raise IrrepprobeError(f"{path} is not the data file capture {cap.path} was taken over (its sha256 differs)")
    return read_structures(path).take(rows)


def model_of(cap: Capture, model=None, trust: bool | None = None, device="cpu") -> Loaded:
    """The model a capture was taken from (or ``model``, a moved copy), refused if it has changed since.
    The capture's own trust decision holds for the very file it was made with (same sha256)."""
    source = model or cap.meta["model"]
    path = Path(source)
    if ":" not in str(source) and (path.suffix or path.is_absolute() or path.exists()):  # a file, not a name or factory
        if not path.exists():
            raise IrrepprobeError(f"the model of capture {cap.path} is not at {path}: pass --model")
        if cap.meta.get("model_sha256") and sha256(path) != cap.meta["model_sha256"]:
            raise IrrepprobeError(f"{path} is not the model capture {cap.path} was taken from (its sha256 differs)")
    trust = cap.meta.get("trusted", False) if trust is None else trust
    # the head or fidelity the capture measured, so that ablations and controls measure the same one
    return load_model(source, cap.meta["adapter"], trust=trust, device=device, head=cap.meta.get("head"))


def reference_check(label: np.ndarray, prediction: np.ndarray, composition: np.ndarray, name: str) -> dict | None:
    """Is the label ``name`` (values ``label`` [n] or [n, 1]) on another reference than the model's
    ``prediction``? Fits ``label - prediction`` on the element counts ``composition`` [n, elements] by least
    squares: another reference when the fit leaves at most :data:`OFFSET_SHARE` of the raw mean absolute
    difference, that raw difference is at least :data:`RAW_OVER_SPREAD` of the label's mean absolute
    deviation, and what the fit leaves is at most :data:`BEYOND_COMPOSITION` of what a fit on element
    counts leaves of the label (the prediction follows the label beyond composition). Returns ``label``,
    ``other_reference``, ``raw_mae``, ``residual_mae``, ``label_spread``, ``label_beyond_composition``,
    ``explained`` (1 - residual / raw) and ``offsets`` (per element column, the fitted offset); None when
    it cannot say (not one scalar per structure, or too few structures for the fit: :data:`REFERENCE_MIN_DOF`)."""
    y, p = np.asarray(label, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    if y.reshape(len(y), -1).shape[1] != 1 or p.reshape(len(p), -1).shape[1] != 1:
        return None
    y, p, C = y.reshape(-1), p.reshape(-1), np.asarray(composition, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p, C = y[ok], p[ok], C[ok]
    if len(y) < np.linalg.matrix_rank(C) + REFERENCE_MIN_DOF:
        return None
    d = y - p
    w = np.linalg.lstsq(C, d, rcond=None)[0]
    raw, residual = float(np.abs(d).mean()), float(np.abs(d - C @ w).mean())
    spread = float(np.abs(y - y.mean()).mean())
    beyond = float(np.abs(y - C @ np.linalg.lstsq(C, y, rcond=None)[0]).mean())
    other = (raw > 0 and residual <= OFFSET_SHARE * raw and raw >= RAW_OVER_SPREAD * spread
             and residual <= BEYOND_COMPOSITION * beyond)
    return {"label": name, "other_reference": bool(other), "raw_mae": raw, "residual_mae": residual,
            "label_spread": spread, "label_beyond_composition": beyond,
            "explained": 1 - residual / raw if raw > 0 else 0.0,
            "offsets": [float(v) for v in w]}


def reference_found(ref: dict, unit: str = "") -> str:
    """What :func:`reference_check` found, in words."""
    u = f" {unit}" if unit else ""
    return (f"a per-element offset explains {100 * ref['explained']:.4g}% of the difference between label "
            f"{ref['label']} and the model's prediction (mean absolute difference {ref['raw_mae']:.4g}{u}, "
            f"{ref['residual_mae']:.4g}{u} after a fit on element counts; the label's own spread "
            f"{ref['label_spread']:.4g}{u})")


def reference_line(ref: dict, unit: str = "") -> str:
    """One line saying what :func:`reference_check` found and what the capture did about it."""
    found = reference_found(ref, unit)
    if ref.get("kept"):
        return (f"label {ref['label']} kept as named (--target), though {found}: errors against it are mostly "
                "that offset, not the model's error")
    return (f"label {ref['label']} looks like another reference: {found}; scoring the shift of the model's own "
            f"prediction instead (--target {ref['label']} keeps the label)")


def run_capture(model: Loaded, structures: Structures, points, batch_size: int = 64, nodes_dir=None,
                batches=None):
    """Run ``model`` over ``structures`` under a :class:`Recorder` on ``points``. Gradients stay on for
    families whose forward needs them (forces by autograd); every reduction is detached, so memory
    stays bounded. Returns the recorder and the predictions [structures, k]."""
    adapter, outputs = model.adapter, []
    with Recorder(model.module, points, nodes_dir, n_molecules=len(structures)) as rec:
        bar = progress(total=len(structures), desc="capture", unit="structure")
        batches = batches if batches is not None else adapter.batches(model, structures, batch_size)
        for batch, out, _ in passes(model, batches, before=rec.begin):
            bar.update(batch.n_structures)
            outputs.append(out.detach().double().cpu())
    bar.close()
    return rec, torch.cat(outputs) if outputs else torch.zeros(0, 1, dtype=torch.float64)


def capture(model: Loaded, structures: Structures, points: list[str] | None = None, out=None,
            batch_size: int = 64, save_nodes: bool = False, target: str | None = None,
            trusted: bool = False, check_equivariance: int = 16, batches=None,
            target_named: bool = False) -> Capture:
    """Capture ``model`` over ``structures`` into ``out`` and return the loaded :class:`Capture`.
    ``points``: glob patterns (default: the adapter's). ``target``: the label holding the model's own
    quantity (then errors are stored); None: the capture holds predictions only. A ``target`` whose
    difference from the prediction is mostly a per-element offset (:func:`reference_check`: another
    reference, e.g. B3LYP energies for a PBE model) is set aside, the capture holding predictions only,
    unless ``target_named`` (the user named it: ``--target``); either way one line says so and
    ``meta["reference"]`` records the check. ``check_equivariance``:
    after the capture, rerun the first that many structures randomly rotated and compare
    (:func:`~irrepprobe.capture.equivariance.check_equivariance`; 0 skips): ``equivariance.csv``,
    ``meta["equivariance"]`` and an ``equivariance_max_rel`` column in the summary; a failure prints one line."""
    if len(structures) == 0:
        raise IrrepprobeError("no structures to capture")
    if check_equivariance is None or check_equivariance < 0:
        raise IrrepprobeError(f"check_equivariance is a number of structures (0 skips the check), got "
                              f"{check_equivariance}")
    if out is None:
        raise IrrepprobeError("give the capture directory (--out)")
    adapter = model.adapter
    label = adapter.labels_of(model, structures, target)
    chosen = choose_points(model, points)
    out = Path(out)
    t0 = time.time()
    rec, pred = run_capture(model, structures, chosen, batch_size, out / "nodes" if save_nodes else None, batches)
    seconds = time.time() - t0

    info = {(p, b.name): (b.l, b.parity, b.mul) for p, bl in rec.blocks.items() for b in bl}
    stats = rec.channel_stats()
    elements = structures.elements
    arrays = {"output": pred.numpy(), "index": np.asarray(structures.ids), "n_atoms": structures.n_atoms.numpy(),
              "composition": structures.composition(elements)}
    reference = None
    if label is not None:
        y = np.asarray(adapter.label_values(model, structures, label), dtype=np.float64)
        if y.shape != arrays["output"].shape:
            raise IrrepprobeError(f"label {label!r} has {y.shape[1]} components per structure but the model "
                                  f"predicts {arrays['output'].shape[1]}")
        reference = reference_check(y, arrays["output"], arrays["composition"], label)
        if reference is not None:
            reference["elements"] = list(elements)  # the atomic numbers of the offsets, in order
            reference["kept"] = not reference["other_reference"] or bool(target_named)
            if reference["other_reference"]:
                print(reference_line(reference, model.quantity.unit), flush=True)
        if reference is None or not reference["other_reference"] or target_named:
            arrays["target"], arrays["error"] = y, arrays["output"] - y
        else:
            label = None  # scored as with no label: the shift of the model's own prediction
    for name, v in structures.labels.items():
        arrays[f"label/{name}"] = np.asarray(v, dtype=np.float64)
    for (p, b, kind), a in rec.molecule_arrays().items():
        arrays[f"mol/{p}/{b}/{kind}"] = a
    for (p, b), s in stats.items():
        for k in ("mean", "var", "min", "max"):
            arrays[f"chan/{p}/{b}/{k}"] = np.asarray(s[k], dtype=np.float64)
    q = model.quantity
    meta = {
        "format": "irrepprobe.capture", "format_version": 2,
        "adapter": adapter.name, "model": model.source, "model_sha256": model.sha256, "trusted": bool(trusted),
        "model_summary": adapter.summary(model),
        # the head (MACE) or fidelity (SevenNet's modality) measured, and all the model has
        "head": model.info.get("head"), "heads": list(model.info.get("heads") or []),
        "quantity": {"name": q.name, "unit": q.unit, "irreps": q.irreps, "per_atom": q.per_atom},
        "target": label, "reference": reference, "data": structures.source, "data_sha256": structures.sha256,
        "labels": {k: {"shape": list(v.shape[1:]), "unit": structures.units.get(k, "")}
                   for k, v in structures.labels.items()},
        "elements": elements, "n_molecules": len(structures), "seconds": round(seconds, 3),
        "periodic": int(structures.pbc.any(1).sum()),  # structures with a periodic direction
        "points": {p.name: {"irreps": str(p.irreps), "module": p.module, "kind": p.kind, "layout": p.layout,
                            "role": p.role,
                            "blocks": [{"name": b.name, "l": b.l, "parity": b.parity, "mul": b.mul}
                                       for b in rec.blocks[p.name]]}
                   for p in chosen if p.name not in rec.skipped},
        "point_order": [p.name for p in chosen if p.name not in rec.skipped],
        "skipped": rec.skipped, "nodes": bool(save_nodes), "batch_size": batch_size,
        "device": str(model.device), "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if adapter.name == "irrepprobe":  # our checkpoints: what experiments and prune read back
        meta["config"] = model.info["config"]
        meta["split"] = structures.source.partition(":")[2] or None
        meta["checkpoint"], meta["checkpoint_sha256"] = model.source, model.sha256
    if not meta["points"]:
        raise IrrepprobeError("no point could be captured: " + "; ".join(f"{k}: {v}" for k, v in rec.skipped.items()))
    summary = summary_table(stats, info)
    meta["equivariance"] = None
    if check_equivariance > 0:
        from ..fileio import save_csv
        from .equivariance import check_equivariance as check, equivariance_line

        table, meta["equivariance"] = check(model, structures, [p for p in chosen if p.name not in rec.skipped],
                                            n=min(check_equivariance, len(structures)), batch_size=batch_size)
        out.mkdir(parents=True, exist_ok=True)
        save_csv(table, out / "equivariance.csv")
        per_block = table.loc[table["kind"].isin(["node", "edge"]), ["point", "block", "max_rel"]]
        summary = summary.merge(per_block.rename(columns={"max_rel": "equivariance_max_rel"}),
                                on=["point", "block"], how="left")
        if not meta["equivariance"]["passed"]:
            print(equivariance_line(meta["equivariance"]), flush=True)
    elif (out / "equivariance.csv").exists():
        (out / "equivariance.csv").unlink()  # an earlier capture's, into the same directory
    write_capture(out, arrays, meta, summary)
    return load_capture(out)


def capture_checkpoint(ckpt_path, split: str = "test", subset: int | None = None, layers=None,
                       out=None, device: str = "auto", batch_size: int = 64, save_nodes: bool = False,
                       cache_dir: str | None = None) -> Capture:
    """Capture one of our checkpoints over its own ``split`` (the first ``subset`` molecules of it) into
    ``out`` (default ``<checkpoint dir>/capture-<split>``)."""
    if split not in QM9_SPLITS:
        raise IrrepprobeError(f"unknown split {split!r}; valid: {', '.join(QM9_SPLITS)}")
    model = load_model(ckpt_path, "irrepprobe", device=resolve_device(device))
    structures = resolve_data(f"qm9:{split}", model, subset, cache_dir or model.info["config"]["data"].get("cache_dir"))
    out = Path(out) if out else Path(ckpt_path).parent / f"capture-{split}"
    return capture(model, structures, layers, out, batch_size, save_nodes, target=model.quantity.name,
                   target_named=True)  # the very label it was trained on: its own reference by construction


def capture_untrained(cap: Capture, out, seed: int | None = None, model=None, device: str = "auto",
                      batch_size: int = 64, cache_dir=None, trust: bool | None = None, points=None,
                      trained: Loaded | None = None, structures: Structures | None = None,
                      batches=None) -> Capture | None:
    """Capture, over the same structures and ``points`` (default: the capture's), the untrained model of
    ``cap`` (same architecture, initialisation ``seed``; None: the family's own choice). None when the
    family has no untrained control. ``trained``, ``structures`` and ``batches`` (the trained model's,
    which an untrained twin shares) save reloading and rebuilding them for every control."""
    trained = trained or model_of(cap, model, trust=trust, device=resolve_device(device))
    ctl = trained.adapter.untrained(trained, seed)
    if ctl is None:
        return None
    structures = structures if structures is not None else structures_of(cap, cache_dir)
    return capture(ctl, structures, points or cap.points, out, batch_size, target=cap.meta["target"],
                   trusted=cap.meta.get("trusted", False), check_equivariance=0, batches=batches,
                   target_named=True)  # the trained capture's decision on its label holds for its control
