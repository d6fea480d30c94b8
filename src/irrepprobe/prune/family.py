"""Prune any family: the model rebuilt without some orders by its own adapter (surgery: the family's own
classes, the kept weights copied, computing what the masked model computes), fine-tuned on the user's
structures (their labels where given, else distilled to the original's energies and forces), written back
in the family's own format, and compared on held-out structures with the original, the pruned model before
fine-tuning and the small architecture trained from scratch with the same budget."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded
from ..adapters.base import parameters
from ..errors import IrrepprobeError
from ..fileio import save_csv, save_text
from ..metrics.finetune import BATCH, LR, STEPS, fingerprint, finetune, outputs, references
from ..metrics.masking import masked
from ..progress import progress


def check_drop(model: Loaded, drop: list[int], channels: bool = False) -> list[int]:
    """``drop`` as sorted orders, or one line saying why this model cannot lose them (before any work);
    with ``channels`` (channels are pruned too) no order at all is fine."""
    drop = sorted({int(l) for l in drop})
    if channels and not drop:
        return drop
    why = model.adapter.why_not_without(model, drop)
    if why:
        raise IrrepprobeError(f"cannot drop l={','.join(map(str, drop))}: {why}")
    return drop


def check_readable(model: Loaded, structures) -> None:
    """Refuse (the adapter's own line) data the model cannot read, such as an element it does not know,
    cheaply: batches of one structure per element present, not of all of them."""
    numbers = structures.numbers.numpy()
    mol = structures.structure_of_atom().numpy()
    _, first = np.unique(numbers, return_index=True)
    for _ in model.adapter.batches(model, structures.take(np.unique(mol[first])), 64):
        pass


def _errors(pred: dict, ref: dict, n_atoms: np.ndarray, per_atom: bool) -> tuple[float, float]:
    """Mean absolute error of the quantity (per atom for extensive ones) and of the force components."""
    norm = n_atoms[:, None] if per_atom else 1.0
    e = float(np.abs((pred["energy"] - ref["energy"]) / norm).mean())
    f = float(np.abs(pred["forces"] - ref["forces"]).mean()) if "forces" in pred and "forces" in ref else np.nan
    return e, f


def _speed(models: dict[str, Loaded], batches, forces: bool, rounds: int = 3) -> dict[str, float]:
    """Structures per second of each model's prediction (with forces where scored), interleaved: every
    batch runs through every model in turn, ``rounds`` times, so that load on the machine hits all alike."""
    spent = {k: 0.0 for k in models}
    n = sum(b.n_structures for b in batches) * rounds
    for _ in range(rounds):
        for b in batches:
            for k, m in models.items():
                t = time.perf_counter()
                with torch.enable_grad() if forces or m.adapter.needs_grad else torch.no_grad():
                    m.adapter.predict(m, b, forces=forces)
                spent[k] += time.perf_counter() - t
    return {k: n / v for k, v in spent.items()}


def md_speed(calculators: dict, systems: dict, steps: int = 20, rounds: int = 2) -> pd.DataFrame:
    """MD steps per second of a short ASE Langevin run (300 K, 0.5 fs) of each system under each
    calculator, interleaved: ``rounds`` times, every calculator runs ``steps`` steps of every system in turn."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    spent = {(c, s): 0.0 for c in calculators for s in systems}
    for r in range(rounds):
        for sname, atoms in systems.items():
            for cname, calc in calculators.items():
                a = atoms.copy()
                a.calc = calc
                MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(r))
                dyn = Langevin(a, 0.5 * units.fs, temperature_K=300, friction=0.02, rng=np.random.default_rng(r))
                a.get_forces()  # the first call builds what the calculator caches; not timed
                t = time.perf_counter()
                dyn.run(steps)
                spent[(cname, sname)] += time.perf_counter() - t
    return pd.DataFrame([{"model": c, "system": s, "MD steps/s": rounds * steps / v} for (c, s), v in spent.items()])


def reference_offsets(model: Loaded, structures, labels: np.ndarray, batch_size: int = BATCH,
                      sample: int = 64) -> dict:
    """Does the label hold the model's own energy reference? On the first ``sample`` structures, the model's
    per-atom energies against the labels', raw and after a least-squares offset per element (what a change
    of reference, e.g. atomization against total energies, shifts). ``offsets`` [elements] and ``elements``
    map a structure's composition to that shift; ``mismatch`` when the raw difference is both large (over
    0.05 per atom) and mostly such an offset (over 5x what the offsets leave)."""
    n = min(sample, len(structures))
    part = structures.take(np.arange(n))
    pred = outputs(model, list(model.adapter.batches(model, part, batch_size)), False)["energy"][:, 0]
    y = np.asarray(labels[:n], dtype=np.float64).reshape(n, -1)[:, 0]
    n_atoms = part.n_atoms.numpy().astype(np.float64)
    elements = sorted(set(structures.numbers.numpy().tolist()))
    comp = part.composition(elements)
    w, *_ = np.linalg.lstsq(comp, y - pred, rcond=None)
    raw = float(np.abs((y - pred) / n_atoms).mean())
    left = float(np.abs((y - pred - comp @ w) / n_atoms).mean())
    return {"raw": raw, "left": left, "offsets": w, "elements": elements, "sample": n,
            "mismatch": bool(raw > 0.05 and raw > 5 * left)}


def shuffled(model: Loaded, fit, refs: list[dict], seed: int, batch_size: int) -> tuple[list, list[dict]]:
    """The fitted structures in the order of ``seed`` (a permutation), batched, with ``refs`` regrouped to
    match: so that fine-tuning seeds differ in which structures share a batch, not only in batch order."""
    from ..data.structures import atoms_of

    perm = np.random.default_rng(seed).permutation(len(fit))
    energy = torch.cat([r["energy"] for r in refs])[perm]
    n_atoms = torch.cat([r["n_atoms"] for r in refs])[perm]
    forces = torch.cat([r["forces"] for r in refs])[atoms_of(fit.ptr, perm)] if "forces" in refs[0] else None
    batches = list(model.adapter.batches(model, fit.take(perm), batch_size))
    out, start, astart = [], 0, 0
    for b in batches:
        r = {"n_atoms": n_atoms[start:start + b.n_structures], "energy": energy[start:start + b.n_structures]}
        if forces is not None:
            r["forces"] = forces[astart:astart + b.n_atoms]
        out.append(r)
        start, astart = start + b.n_structures, astart + b.n_atoms
    return batches, out


def _seed_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per model: the mean over its seeds of each error and speed column with a Student t interval (NaN
    bounds for one seed; coverage checked in tests/test_seeds.py)."""
    from ..metrics.seeds import t_interval

    cols = [c for c in table if "MAE" in c]
    rows = []
    for name, g in table.groupby("model", sort=False):
        row = {"model": name, "seeds": len(g), "parameters": int(g["parameters"].iloc[0])}
        for c in cols:
            row[c], row[f"{c} low"], row[f"{c} high"] = t_interval(g[c])
        rows.append(row)
    return pd.DataFrame(rows)


def prune_family(model: Loaded, structures, drop: list[int], out, steps: int = STEPS, lr: float = LR,
                 batch_size: int = BATCH, held_out: float = 0.2, label: str | None = None, scratch: bool = True,
                 seeds: int = 1, held=None, shift_references: bool = False, md_steps: int = 20,
                 channels: dict | str | None = None, speedup: float = 2.0, equal: bool = False, timed: bool = True,
                 log=print) -> dict:
    """Drop the orders ``drop`` from ``model`` by surgery, fine-tune for ``steps`` on ``structures`` (toward
    ``label`` and the data's forces where given, else the original's own predictions) once per seed
    (``seeds``: 0, 1, ...), write each to ``out`` in the family's format, and compare on ``held`` (other
    structures: other compositions or trajectories) or, without it, on the last ``held_out`` fraction of
    ``structures``. With ``scratch`` the small architecture is also trained from a fresh initialisation with
    the same budget, once (seed 0): a control, not an arm with an interval. A ``label`` on another energy
    reference than the model's is refused (:func:`reference_offsets`) unless ``shift_references``, which
    subtracts the fitted per-element offsets from it. A rerun reuses the written models when the settings
    match. ``md_steps``: MD speed of the original and the first pruned file through the family's own ASE
    calculator (:func:`md_speed`; 0: none). ``channels``: counts of channels kept per (group, block) from
    :func:`~irrepprobe.prune.channels.parse_channels`, or ``"auto"`` (as many removed as a ``speedup`` in
    floating-point operations asks, ``equal`` across the orders of a layer when asked); the channels are
    chosen by :func:`~irrepprobe.metrics.channels.channel_importance` on the fitted structures. ``timed``:
    structures per second of every variant, interleaved (off for a front, which times MD instead)."""
    drop = check_drop(model, drop, channels is not None)
    if steps < 1:
        raise IrrepprobeError(f"--steps must be at least 1, got {steps}")
    if seeds < 1:
        raise IrrepprobeError(f"--seeds must be at least 1, got {seeds}")
    if md_steps < 0:
        raise IrrepprobeError(f"--md-steps must be 0 (no MD speed) or a number of steps, got {md_steps}")
    if held is None:
        n = len(structures)
        n_test = max(1, int(round(n * held_out)))
        if n - n_test < 1:
            raise IrrepprobeError(f"pruning needs structures to fine-tune on and to hold out; the data has {n}")
        fit, held = structures.take(np.arange(n - n_test)), structures.take(np.arange(n - n_test, n))
        split = "last"
    else:
        fit, split = structures, "file"
    n_fit = len(fit)
    if label is not None:
        fit.require_label(label)
        held.require_label(label)
    out = Path(out)
    adapter = model.adapter
    forces = adapter.has_forces
    labels = None if label is None else adapter.label_values(model, fit, label)
    truth_e = None if label is None else adapter.label_values(model, held, label)
    has_f = fit.atom_labels.get("forces") is not None
    # the batches first: they refuse data the model cannot read (an unknown element) before out exists
    fit_b = list(adapter.batches(model, fit, batch_size))
    held_b = list(adapter.batches(model, held, batch_size))
    shift = None
    if labels is not None and model.quantity.per_atom:
        ref = reference_offsets(model, fit, labels, batch_size)
        what = (f"--target {label} holds another energy reference than the model's: they differ by "
                f"{ref['raw']:.3g} {model.quantity.unit}/atom on average, {ref['left']:.3g} after one offset per "
                f"element (fitted on {ref['sample']} structures)")
        if ref["mismatch"] and not shift_references:
            raise IrrepprobeError(what + "; pass --shift-references to subtract those offsets from the labels, "
                                  "or leave out --target to distil the model's own energies")
        if ref["mismatch"]:
            log(what + ": the offsets are subtracted from the labels (--shift-references)")
            shift = ref
            labels = labels - (fit.composition(ref["elements"]) @ ref["offsets"])[:, None]
            truth_e = truth_e - (held.composition(ref["elements"]) @ ref["offsets"])[:, None]
    out.mkdir(parents=True, exist_ok=True)
    kept = {}

    def refs():  # the original's predictions cost a pass over the data: only when something is fine-tuned
        if "refs" not in kept:
            kept["refs"] = references(model, fit_b, labels, fit.atom_labels["forces"] if has_f else None, forces)
        return kept["refs"]
    settings = {"drop": drop, "steps": steps, "lr": lr, "batch_size": batch_size, "fit": n_fit,
                "held_out": len(held), "split": split, "label": label, "forces": forces,
                "forces_from": "labels" if has_f and forces else "original" if forces else None, "batches": "shuffled",
                "shift_references": shift is not None, **fingerprint(model, fit)}
    keep, cut = None, f"l={','.join(map(str, drop))}"
    if channels is not None:
        keep, cut = _channels(model, fit, held, drop, channels, speedup, equal, batch_size, out, log)
        settings.update(channels=cut, kept=_digest(keep))
        cut = (f"l={','.join(map(str, drop))} and " if drop else "") + f"channels (kept: {cut})"
    log(f"surgery: {cut} removed from {adapter.summary(model)}")
    small = adapter.without_orders(model, drop, keep) if keep else adapter.without_orders(model, drop)
    adapter.write(small, out / f"pruned-before{adapter.suffix}")  # for validate: what surgery alone gives
    variants = [("original", 0, model), ("pruned, before fine-tuning", 0, small)]

    def tuned(name: str, start: Loaded, seed: int) -> Loaded:
        path, meta = out / f"{name}{adapter.suffix}", out / f"{name}.json"
        want = {**settings, "seed": seed}
        if path.exists() and meta.exists() and json.loads(meta.read_text()) == want:
            log(f"reusing {path}")
            return adapter.load(str(path), trust=True, device=model.device)  # our own file, written below
        m = masked(start, [])  # a copy: the start stays as it was
        bar = progress(total=steps, desc=f"fine-tuning {name}", unit="step")
        batches, regrouped = shuffled(model, fit, refs(), seed, batch_size)
        finetune(m, batches, regrouped, steps, lr, seed, bar)
        bar.close()
        adapter.write(m, path)
        save_text(json.dumps(want), meta)
        # what is compared is the written file as the family reads it back, not the model in memory
        return adapter.load(str(path), trust=True, device=model.device)
    for seed in range(seeds):
        variants.append(("pruned, fine-tuned", seed, tuned("pruned" if seed == 0 else f"pruned-seed{seed}", small, seed)))
    if scratch:
        fresh = adapter.untrained(small, seed=0)
        if fresh is None:
            log(f"the {adapter.name} adapter cannot re-initialise the small architecture: no from-scratch arm")
        else:
            variants.append((f"small, from scratch ({steps} steps)", 0, tuned("scratch", fresh, 0)))
    preds = [outputs(m, held_b, forces) for _, _, m in variants]
    # structures/s of each variant (not ``timed``: a front times its files by MD, all of them in one run)
    speed = _speed({f"{k} {s}": m for k, s, m in variants}, held_b, forces) if timed else {}
    n_atoms = held.n_atoms.numpy().astype(np.float64)
    per_atom = model.quantity.per_atom
    truth = None
    if truth_e is not None:
        truth = {"energy": truth_e}
        if held.atom_labels.get("forces") is not None and forces:
            truth["forces"] = held.atom_labels["forces"]
    rows = []
    for (k, seed, m), pred in zip(variants, preds):
        row = {"model": k, "seed": seed, "parameters": parameters(m.module)}
        row["energy MAE vs original"], row["forces MAE vs original"] = _errors(pred, preds[0], n_atoms, per_atom)
        if truth is not None:
            row["energy MAE vs labels"], row["forces MAE vs labels"] = _errors(pred, truth, n_atoms, per_atom)
        row["structures/s"] = speed.get(f"{k} {seed}", np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["speed-up"] = table["structures/s"] / table["structures/s"].iloc[0]
    save_csv(table, out / "comparison.csv")
    over_seeds = _seed_rows(table)
    save_csv(over_seeds, out / "comparison_seeds.csv")
    md, md_note = None, None
    if md_steps and not hasattr(adapter, "calculator"):
        md_note = getattr(adapter, "no_calculator", f"the {adapter.name} adapter has no ASE calculator")
        log(f"no MD speed: {md_note}")
    if md_steps and hasattr(adapter, "calculator"):
        files = {"original": model.info.get("path") or model.source, "pruned, fine-tuned": out / f"pruned{adapter.suffix}"}
        calcs = {k: adapter.calculator(str(v), model) for k, v in files.items()}
        md = md_speed(calcs, md_systems(held, model.info.get("elements")), md_steps)
        save_csv(md, out / "md_speed.csv")
    return {"table": table, "seeds_table": over_seeds, "md": md, "md_note": md_note, "drop": drop, "cut": cut,
            "held": held, "truth": truth if truth is not None else preds[0],
            "settings": {**settings, "seeds": seeds}, "shift": shift, "out": out,
            "pruned": out / f"pruned{adapter.suffix}", "variants": {f"{k} {s}": m for k, s, m in variants},
            "files": [out / (("pruned" if s == 0 else f"pruned-seed{s}") + adapter.suffix) for s in range(seeds)]}


def _digest(obj) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _channels(model: Loaded, fit, held, drop, channels, speedup, equal, batch_size, out, log) -> tuple[dict, str]:
    """The channels kept (point -> block -> channels) and their counts as irreps per layer: importance on
    (up to 64 of) the fitted structures, written to ``channels.csv``; ``auto`` by floating-point operations
    on the first MD system (:func:`md_systems`)."""
    from ..metrics.channels import channel_importance
    from ..data.structures import from_atoms
    from .channels import auto_counts, choose, describe_counts, flops

    adapter = model.adapter
    groups, tied = adapter.channel_groups(model), adapter.tied_points(model)
    names = {p for _, pts, _ in groups for p in pts}
    points = [p for p in adapter.points(model) if p.name in names]
    part = fit.take(np.arange(min(64, len(fit))))
    imp = channel_importance(model, list(adapter.batches(model, part, batch_size)), points)
    save_csv(imp, out / "channels.csv")
    counts = channels
    if channels == "auto":
        cell = next(iter(md_systems(held, model.info.get("elements")).values()))
        batch = next(adapter.batches(model, from_atoms([cell]), 1))
        base = flops(model, batch)

        def cost(c):
            return flops(adapter.without_orders(model, drop, choose(imp, groups, c, tied)), batch) / base
        counts = auto_counts(imp, groups, drop, cost, 1.0 / speedup, equal or adapter.equal_channels)
        log(f"--channels auto: {cost(counts):.3f} of the original's floating-point operations (asked: at most "
            f"{1 / speedup:.3f}, --speedup {speedup:g})")
    keep = choose(imp, groups, counts, tied)
    save_text(json.dumps(keep), out / "channels_kept.json")
    return keep, describe_counts(counts, groups)


def md_systems(held, elements: list[int] | None = None) -> dict:
    """One periodic and one molecular system for the MD speed: a rattled 64-atom diamond Si cell when the
    model knows silicon (``elements``: the model's, None for all), else the largest held-out structure in a
    periodic box with 6 A of vacuum, repeated twice; and the largest held-out structure itself."""
    from ase.build import bulk

    big = int(np.argmax(held.n_atoms.numpy()))
    mol = held.atoms(big)
    if not elements or 14 in elements:
        cell = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
        cell.rattle(0.05, seed=0)
        name = f"Si, {len(cell)} atoms, periodic"
    else:
        cell = mol.copy()
        cell.center(vacuum=3.0)
        cell.pbc = True
        cell = cell * (2, 1, 1)
        name = f"largest held-out structure in a periodic box, x2: {len(cell)} atoms"
    return {name: cell, f"largest held-out structure, {len(mol)} atoms": mol}
