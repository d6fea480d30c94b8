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

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded
from ..capture import blocks
from ..errors import IrrepprobeError
from ..fileio import save_npz
from ..intervene import describe
from ..progress import progress
from .finetune import BATCH, LR, STEPS, fingerprint, finetune, outputs, references
from .interventions import paired_bootstrap
from .masking import mask_edits, masked
from .scores import ForceScorer, Scorer, composition_baseline, composition_fit
from .verdicts import THRESHOLD, leg_outcomes

LEGS = ("dependence", "recovery", "necessity")


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
    refs = references(model, fit_b, None if labels is None else labels[fit_rows],
                      fit.atom_labels["forces"] if has_f else None, forces)
    base = outputs(model, held_b, forces)
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
        pred = outputs(m, held_b, forces)
        if path is not None:
            save_npz(pred, path)
            (out / f"{name}.json").write_text(json.dumps(settings))
        return pred

    control = run("control", [])
    rows = leg_rows(legs, base, control, 0, "control", n_boot, seed)
    for l in orders:
        rows += leg_rows(legs, base, outputs(masked(model, [l]), held_b, forces), l, "dependence", n_boot, seed)
        rows += leg_rows(legs, control, run(f"l{l}", [l]), l, "recovery", n_boot, seed)
    table = pd.DataFrame(rows)
    table.loc[table["leg"] == "control", "order"] = "none"
    table["outcome"] = leg_outcomes(table, threshold).where(table["leg"] != "control", "")
    for k, v in settings.items():
        table[k] = v
    # what each leg rests on: the mask's edits (fine-tuned with them on, for recovery); the control has none
    table["edits"] = [describe(mask_edits(model, [l])) if leg != "control" else "" for l, leg in zip(table["l"], table["leg"])]
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
