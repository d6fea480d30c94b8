"""Does the architecture need an order, or does only this checkpoint depend on it?

A trained network co-adapts with whatever it was trained with, so zeroing an order in it (dependence)
can cost hundreds of per cent where retraining without the order costs a few. Three legs, per order
l > 0, each with a paired bootstrap interval over held-out structures and an outcome:

* ``dependence``: the masked model (the order zeroed at every point and in the spherical harmonics,
  :func:`masked`) against the checkpoint, as it stands;
* ``recovery``: the masked model fine-tuned for a fixed budget (:func:`finetune`; the mask stays on),
  against the checkpoint given the same fine-tuning (``control``), so that what fine-tuning itself gains
  does not pass for recovery;
* ``necessity``: a model trained from scratch without the order (our models: ``irrepprobe prune``),
  compared with the checkpoint by :func:`necessity`.

Fine-tuning fits the data's labels of the model's quantity (and per-atom forces where the data has them),
or without labels distils the checkpoint's own energies and forces: the question is then whether the
smaller function can reproduce what the checkpoint computes. Scores are those of utilisation: the change
of the error (or, distilled, of the shift from the checkpoint's prediction) relative to the checkpoint's
error (raw) and as a share of what it learned beyond composition (scale-free).
"""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded
from ..capture import blocks, replacing
from ..errors import IrrepprobeError
from ..fileio import save_npz
from ..progress import progress
from .interventions import paired_bootstrap
from .utilisation import ForceScorer, Scorer, composition_fit
from .verdicts import THRESHOLD, leg_outcomes

LEGS = ("dependence", "recovery", "necessity")
STEPS, LR, BATCH = 200, 1e-3, 16


def fingerprint(model: Loaded, structures) -> dict:
    """What a kept fine-tuning run was made from (the model file and head, the structures), so that a rerun
    reuses it only for the same model and data."""
    import hashlib

    h = hashlib.sha256()
    for t in (structures.numbers, structures.pos, structures.ptr):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    m = hashlib.sha256()
    if model.sha256 is None:  # a model built in memory: its weights
        for t in model.module.state_dict().values():
            if torch.is_tensor(t):  # every dtype, as raw bytes
                m.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"model": model.sha256 or m.hexdigest(), "head": model.info.get("head"), "data": h.hexdigest()}


def mask_hooks(model: Loaded, drop) -> list:
    """Hooks (through :func:`~irrepprobe.capture.replacing`) that zero the orders ``drop`` at every
    point of :meth:`~irrepprobe.adapters.Adapter.mask_points`."""
    drop, fns, points = {int(l) for l in drop}, {}, []
    for p in model.adapter.mask_points(model):
        cols = [b.index for b in blocks(p.irreps) if b.l in drop]
        if not cols:
            continue
        keep = torch.ones(p.irreps.dim)
        keep[torch.cat(cols)] = 0
        fns[p.name] = lambda x, keep=keep: x * keep.to(x)
        points.append(p)
    return replacing(points, fns)


def masked(model: Loaded, drop) -> Loaded:
    """A copy of ``model`` with the orders ``drop`` zeroed at every point but the output, spherical
    harmonics included, by forward hooks that belong to the copy: it trains with the mask on."""
    module = copy.deepcopy(model.module)
    new = replace(model, module=module, info={**model.info, "masked": sorted(int(l) for l in drop)})
    modules = dict(module.named_modules())
    for name, fn in mask_hooks(new, drop):
        modules[name].register_forward_hook(fn)
    return new


def _reference(model: Loaded, batches, labels, force_labels, want_forces: bool) -> list[dict]:
    """Per batch, what fine-tuning fits: the labels where given, else the model's own predictions."""
    refs, start, astart = [], 0, 0
    for b in batches:
        ref = {"n_atoms": torch.bincount(b.atom_batch.cpu(), minlength=b.n_structures).double()[:, None]}
        if labels is None or (want_forces and force_labels is None):
            with torch.enable_grad() if want_forces or model.adapter.needs_grad else torch.no_grad():
                pred = model.adapter.predict(model, b, forces=want_forces).detach().double().cpu()
            own_f = model.adapter.forces(model, b) if want_forces else None
        ref["energy"] = (torch.as_tensor(labels[start:start + b.n_structures], dtype=torch.float64)
                         if labels is not None else pred)
        if want_forces:
            ref["forces"] = (torch.as_tensor(force_labels[astart:astart + b.n_atoms], dtype=torch.float64)
                             if force_labels is not None else own_f.detach().double().cpu())
        refs.append(ref)
        start, astart = start + b.n_structures, astart + b.n_atoms
    return refs


def finetune(model: Loaded, batches, refs: list[dict], steps: int = STEPS, lr: float = LR, seed: int = 0,
             bar=None) -> Loaded:
    """``model`` (in place) after ``steps`` Adam steps (cosine decay from ``lr``) on ``batches`` (shuffled, epoch after epoch) toward
    ``refs`` (per batch: ``energy`` [n, k], ``n_atoms`` [n, 1], optional ``forces`` [atoms, 3]). The loss is
    the mean squared error of the quantity (per atom for extensive ones) over its variance in ``refs``,
    plus that of the force components over their mean square: both count alike whatever their units."""
    per_atom, forces = model.quantity.per_atom, "forces" in refs[0]
    norm = (lambda r: r["n_atoms"]) if per_atom else (lambda r: 1.0)
    e_all = torch.cat([r["energy"] / norm(r) for r in refs])
    e_var = float(e_all.var()) if len(e_all) > 1 else 1.0
    e_var = e_var if e_var > 1e-12 else float(e_all.pow(2).mean()) or 1.0
    f_ms = float(torch.cat([r["forces"] for r in refs]).pow(2).mean()) if forces else 1.0
    f_ms = f_ms if f_ms > 1e-12 else 1.0
    params = [p for p in model.module.parameters() if p.requires_grad]
    if not params:
        raise IrrepprobeError("the model has no trainable parameters to fine-tune")
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # a fixed budget, ended at a small step
    gen, order = torch.Generator().manual_seed(seed), []
    adapter, keep = model.adapter, model.adapter.keep_graph
    adapter.keep_graph = True  # the energy (and forces) stay in the graph
    try:
        for _ in range(steps):
            if not order:
                order = torch.randperm(len(batches), generator=gen).tolist()
            k = order.pop()
            b, r = batches[k], refs[k]
            with torch.enable_grad():
                pred = adapter.predict(model, b, forces=forces)
                dtype = pred.dtype
                e = (pred - r["energy"].to(pred.device, dtype)) / (r["n_atoms"].to(pred.device, dtype) if per_atom else 1)
                loss = e.pow(2).mean() / e_var
                if forces:
                    f = adapter.forces(model, b)
                    loss = loss + (f - r["forces"].to(f.device, f.dtype)).pow(2).mean() / f_ms
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            if bar is not None:
                bar.update(1)
    finally:
        adapter.keep_graph = keep
    return model


def _predict(model: Loaded, batches, forces: bool) -> dict[str, np.ndarray]:
    """The quantity [n, k] (and forces [atoms, 3]) over ``batches``."""
    e, f = [], []
    grad = torch.enable_grad() if forces or model.adapter.needs_grad else torch.no_grad()
    for b in batches:
        with grad:
            e.append(model.adapter.predict(model, b, forces=forces).detach().double().cpu())
        if forces:
            f.append(model.adapter.forces(model, b).detach().double().cpu())
    out = {"energy": torch.cat(e).numpy()}
    if forces:
        out["forces"] = torch.cat(f).numpy()
    return out


class _Legs:
    """Per-structure scores of any held-out prediction, one array per quantity, against the checkpoint's
    references (labels, or its own predictions), with the checkpoint's scales."""

    def __init__(self, base: dict, held, batches, energy_labels, force_labels, per_atom, composition, name):
        n_atoms = held.n_atoms.numpy().astype(np.float64)
        self.energy = Scorer(torch.as_tensor(base["energy"]), energy_labels, n_atoms, per_atom, composition, name)
        self.forces, self.batches = None, batches
        if "forces" in base:
            self.forces = ForceScorer(force_labels)
            start = 0
            for k, b in enumerate(batches):
                self.forces.add_base(k, torch.as_tensor(base["forces"][start:start + b.n_atoms]), b.atom_batch,
                                     torch.arange(start, start + b.n_atoms), b.n_structures)
                start += b.n_atoms

    def scorers(self):
        return [self.energy] + ([self.forces] if self.forces is not None else [])

    def per(self, pred: dict) -> list[np.ndarray]:
        out = [self.energy.per_structure(torch.as_tensor(pred["energy"]))]
        if self.forces is not None:
            f, start, parts = pred["forces"], 0, []
            for k, b in enumerate(self.batches):
                parts.append(self.forces.per_batch(k, torch.as_tensor(f[start:start + b.n_atoms])))
                start += b.n_atoms
            out.append(np.concatenate(parts))
        return out


def leg_rows(legs: _Legs, before: dict, after: dict, order: int, leg: str, n_boot: int, seed: int) -> list[dict]:
    """One row per quantity: ``after`` against ``before``, raw and scale-free with paired intervals."""
    rows = []
    for s, a, b in zip(legs.scorers(), legs.per(before), legs.per(after)):
        n = len(a)
        scale = s.scale(np.arange(n))
        free = paired_bootstrap(a, b, s.scale, n_boot, seed) if scale > 0 else (np.nan,) * 3
        # raw: relative to the checkpoint's error; for a shift it is the scale-free number itself
        raw = paired_bootstrap(a, b, lambda r: a[r].mean(), n_boot, seed) if s.kind == "error" else free
        rows.append({"order": f"l={order}", "l": order, "leg": leg, "quantity": s.name, "score": s.kind,
                     "mae": float(b.mean()), "base_mae": float(a.mean()), "raw": raw[0], "raw_low": raw[1],
                     "raw_high": raw[2], "scale_free": free[0], "scale_free_low": free[1],
                     "scale_free_high": free[2], "scale": scale, "structures": n})
    return rows


def recovery(model: Loaded, structures, orders=None, label: str | None = None, forces: bool = True,
             steps: int = STEPS, lr: float = LR, batch_size: int = BATCH, held_out: float = 0.5,
             threshold: float = THRESHOLD, seed: int = 0, n_boot: int = 1000, out=None, log=print) -> pd.DataFrame:
    """Dependence and recovery of every order l > 0 in ``orders`` (default: every order at the model's
    mask points): the table of :func:`leg_rows` for both legs and the fine-tuning control, with
    ``outcome`` (:func:`leg_outcomes`; the control row, which compares the fine-tuned checkpoint to the
    checkpoint, has none). The last ``held_out`` share of ``structures`` is scored, the rest fine-tuned
    on. ``label``: the label of the model's quantity in ``structures`` (None: distil the model's own
    predictions); forces are fitted and scored when the family computes them and ``forces`` is set
    (against the data's ``forces`` when present, else distilled). ``out``: a directory where each
    finished fine-tuning run's held-out predictions are kept, so that a rerun resumes."""
    if steps < 1:
        raise IrrepprobeError(f"--recovery-steps must be at least 1, got {steps}")
    if not 0 < held_out < 1:
        raise IrrepprobeError(f"held_out must be a fraction between 0 and 1, got {held_out:g}")
    n = len(structures)
    n_test = int(round(n * held_out))
    if n - n_test < 1 or n_test < 2:
        raise IrrepprobeError(f"recovery needs at least 3 structures (fine-tuning and held-out), got {n}")
    fit_rows, test_rows = np.arange(n - n_test), np.arange(n - n_test, n)
    present = sorted({b.l for p in model.adapter.mask_points(model) for b in blocks(p.irreps) if b.l > 0})
    orders = present if orders is None else sorted({int(l) for l in orders})
    missing = [l for l in orders if l not in present]
    if missing or 0 in orders:
        raise IrrepprobeError(f"cannot mask l={(missing or [0])[0]}: the orders above 0 this model carries are "
                              f"{present}")
    forces = bool(forces and model.adapter.has_forces)
    fit, held = structures.take(fit_rows), structures.take(test_rows)
    labels = None if label is None else model.adapter.label_values(model, structures, label)
    has_f = structures.atom_labels.get("forces") is not None and structures.atom_labels["forces"].shape[1:] == (3,)
    fit_b = list(model.adapter.batches(model, fit, batch_size))
    held_b = list(model.adapter.batches(model, held, batch_size))
    refs = _reference(model, fit_b, None if labels is None else labels[fit_rows],
                      fit.atom_labels["forces"] if has_f else None, forces)
    base = _predict(model, held_b, forces)
    counts = np.c_[structures.composition(), np.ones(n)]
    comp = None if labels is None else composition_fit(counts[fit_rows], labels[fit_rows], counts[test_rows],
                                                       model.quantity.irreps)
    legs = _Legs(base, held, held_b, None if labels is None else labels[test_rows],
                 held.atom_labels["forces"] if has_f else None, model.quantity.per_atom,
                 comp, model.quantity.name)
    out = Path(out) if out else None
    settings = {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed, "fit": len(fit_rows),
                "held_out": len(test_rows), "label": label, "forces": forces, **fingerprint(model, structures)}

    def run(name: str, drop) -> dict:
        """Held-out predictions after fine-tuning (``drop`` masked), reused from ``out`` when done."""
        path = out / f"{name}.npz" if out else None
        if path is not None and path.exists() and (out / f"{name}.json").exists() \
                and json.loads((out / f"{name}.json").read_text()) == settings:
            log(f"reusing the fine-tuned {name} in {path}")
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        m = masked(model, drop)
        bar = progress(total=steps, desc=f"fine-tuning {name}", unit="step")
        finetune(m, fit_b, refs, steps, lr, seed, bar)
        bar.close()
        pred = _predict(m, held_b, forces)
        if path is not None:
            save_npz(pred, path)
            (out / f"{name}.json").write_text(json.dumps(settings))
        return pred

    control = run("control", [])
    rows = leg_rows(legs, base, control, 0, "control", n_boot, seed)
    for l in orders:
        rows += leg_rows(legs, base, _predict(masked(model, [l]), held_b, forces), l, "dependence", n_boot, seed)
        rows += leg_rows(legs, control, run(f"l{l}", [l]), l, "recovery", n_boot, seed)
    table = pd.DataFrame(rows)
    table.loc[table["leg"] == "control", "order"] = "none"
    table["outcome"] = leg_outcomes(table, threshold).where(table["leg"] != "control", "")
    for k, v in settings.items():
        table[k] = v
    return table


def recovery_of(cap, model=None, molecules: int | None = 1000, steps: int = STEPS, lr: float = LR,
                batch_size: int = BATCH, quantity: str = "both", out=None, trust: bool | None = None,
                device: str = "auto", threshold: float = THRESHOLD, seed: int = 0, log=print) -> pd.DataFrame:
    """:func:`recovery` of the captured model on the capture's first ``molecules`` structures, fitting the
    capture's target where it has one (else distilling), forces unless ``quantity`` is ``energy``."""
    from ..capture import model_of, structures_of
    from ..runtime import resolve_device

    loaded = model_of(cap, model, trust=trust, device=resolve_device(device))
    rows = np.arange(len(cap.arrays["index"]))[:molecules]
    structures = structures_of(cap).take(rows)
    label = loaded.adapter.labels_of(loaded, structures, cap.meta.get("target"))
    return recovery(loaded, structures, label=label, forces=quantity != "energy", steps=steps, lr=lr,
                    batch_size=batch_size, threshold=threshold, seed=seed, out=out, log=log)


def necessity(full, pruned, order: str, threshold: float = THRESHOLD, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The necessity leg from two captures over the same labelled structures: the model trained with the
    order (``full``) and one trained from scratch without it (``pruned``, e.g. ``irrepprobe prune``'s),
    paired over structures: the change of the error, raw and as a share of what ``full`` learned beyond
    composition. ``order``: what was dropped, e.g. ``"l=1"`` or ``"l=1,2"``."""
    from .utilisation import composition_baseline

    for c in (full, pruned):
        if "error" not in c.arrays:
            raise IrrepprobeError(f"capture {c.path} holds no errors (no label of the model's quantity): "
                                  "necessity compares trained models' errors")
    if not np.array_equal(full.arrays["index"], pruned.arrays["index"]) or full.meta["target"] != pruned.meta["target"]:
        raise IrrepprobeError(f"captures {full.path} and {pruned.path} are not over the same structures and target")
    a = np.abs(np.asarray(full.errors, np.float64)).reshape(len(full.errors), -1).mean(1)
    b = np.abs(np.asarray(pruned.errors, np.float64)).reshape(len(pruned.errors), -1).mean(1)
    comp = composition_baseline(full)
    c = np.abs(comp - np.asarray(full.targets, np.float64).reshape(len(comp), -1)).mean(1)
    raw = paired_bootstrap(a, b, lambda r: a[r].mean(), n_boot, seed)
    scale = float(c.mean() - a.mean())
    free = paired_bootstrap(a, b, lambda r: c[r].mean() - a[r].mean(), n_boot, seed) if scale > 0 else (np.nan,) * 3
    table = pd.DataFrame([{"order": order, "l": -1, "leg": "necessity", "quantity": full.meta["target"],
                           "score": "error", "mae": float(b.mean()), "base_mae": float(a.mean()), "raw": raw[0],
                           "raw_low": raw[1], "raw_high": raw[2], "scale_free": free[0], "scale_free_low": free[1],
                           "scale_free_high": free[2], "scale": scale, "structures": len(a)}])
    table["outcome"] = leg_outcomes(table, threshold)
    return table
