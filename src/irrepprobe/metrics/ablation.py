"""Ablation: each block (and each order at every point at once) replaced by an :class:`~irrepprobe.
intervene.Edit` under each intervention, scored with paired bootstrap intervals, with a sequential rule
that stops adding structures once a block is clearly used."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded, predict_all
from ..capture import blocks, hooked
from ..intervene import Edit, describe, edit_hooks, order_edits
from ..progress import progress
from ..runtime import grad_context
from .interventions import Activations, Baselines, paired_bootstrap
from .scores import ForceScorer, Scorer
from .verdicts import THRESHOLD


def looks_for(n: int, first: int | None) -> list[int]:
    """Structure counts at which a sequential ablation looks: ``first``, doubling, and ``n``; only ``n``
    when ``first`` is None or not below ``n``."""
    if not first or first >= n:
        return [n]
    looks = [first]
    while 2 * looks[-1] < n:
        looks.append(2 * looks[-1])
    return looks + [n]


def settled(intervals: list[tuple[float, float]], threshold: float) -> bool:
    """Whether an ablation can stop adding structures: some quantity's interval lies wholly above
    ``threshold`` (the block is used under this intervention whatever the rest say). Never the other
    way: an "unused" verdict, the one that prunes, always rests on every structure, so that it is the one
    a full computation gives."""
    return any(np.isfinite(lo) and lo >= threshold for lo, _ in intervals)


def interim(scorers, per: list[np.ndarray], n: int, level: float, threshold: float, n_boot: int, seed: int) -> bool:
    """The sequential rule's look at the first ``n`` structures: each quantity's paired bootstrap
    interval at ``level``, then :func:`settled`."""
    ivs = [paired_bootstrap(s.base_per[:n], p[:n], s.scale, n_boot, seed, level)[1:] for s, p in zip(scorers, per)]
    return settled(ivs, threshold)


def sequential_stop(scorers, per: list[np.ndarray], first_look: int, threshold: float = THRESHOLD,
                    alpha: float = 0.05, n_boot: int = 1000, seed: int = 0) -> int:
    """How many structures :func:`ablation`'s sequential rule uses for one ablation whose per-structure
    scores (one array per quantity, over all structures) are ``per``: the rule on its own, to test it."""
    n = len(per[0])
    looks = looks_for(n, first_look)
    level = 1 - alpha / len(looks)
    for look in looks[:-1]:
        if interim(scorers, per, look, level, threshold, n_boot, seed):
            return look
    return n


def ablation(model: Loaded, batches, points, scorer: Scorer, orders: bool = True,
             interventions=("zero",), seed: int = 0, n_boot: int = 1000, forces: ForceScorer | None = None,
             first_look: int | None = None, threshold: float = THRESHOLD, alpha: float = 0.05,
             means: dict | None = None, numbers: torch.Tensor | None = None) -> pd.DataFrame:
    """Per (point, block, intervention, quantity): the score with the block replaced, raw and
    scale-free with a paired bootstrap interval over structures. With ``orders``, also each order l > 0
    replaced at every point at once (point ``"all"``: a redundant copy in another layer cannot stand in)
    and, where the family can build it, the order truly removed (intervention ``removed``: spherical
    harmonics and every path through the order switched off, which joint replacement leaves in place).

    ``forces``: also score the forces (one backward pass per ablated batch). ``first_look``: a sequential
    rule: structures are added batch by batch, and at ``first_look`` structures and every doubling an
    ablation whose interval at level ``1 - alpha / looks`` lies wholly above ``threshold`` for some
    quantity (see :func:`settled`) stops; Bonferroni over the looks keeps the chance that any early stop
    calls a block used that is not below ``alpha``. The last look uses all structures and the usual 95%.
    l > 0 blocks under ``mean`` are the zero ablation (the rotation average is zero): not rerun, copied.
    ``numbers``: every atom's atomic number, batch after batch: ``resample`` donors of the same element."""
    n_all = sum(b.n_structures for b in batches)
    looks = looks_for(n_all, first_look)
    level = 1 - alpha / len(looks)
    acts = Activations(model, batches, points) if set(interventions) - {"zero"} else None
    higher = sorted({b.l for p in points for b in blocks(p.irreps) if b.l > 0})
    targets = [(p.name, b.name, b.l, "e" if b.parity == 1 else "o", [Edit(p.name, (b.name,))])
               for p in points for b in blocks(p.irreps)]
    if orders:
        targets += [("all", f"l={l}", l, "", order_edits(points, l)) for l in higher]
    runs = [(kind, t[:4] + ([replace(e, how=kind) for e in t[4]],)) for kind in interventions for t in targets
            if not (kind == "mean" and t[2] > 0)]
    built = {kind: Baselines(kind, points, acts, batches, seed, means=means, first=looks[0], numbers=numbers)
             for kind in interventions}
    scorers = [scorer] + ([forces] if forces is not None else [])
    preds = {i: [] for i in range(len(runs))}  # energy predictions per batch
    fper = {i: [] for i in range(len(runs))}  # per-structure force scores per batch

    def per(i) -> list[np.ndarray]:  # run i's per-structure scores so far, one array per quantity
        return [scorer.per_structure(torch.cat(preds[i]))] + ([np.concatenate(fper[i])] if forces is not None else [])
    stopped_at: dict[int, int] = {}
    done, look = 0, 0
    bar = progress(total=len(runs) * n_all, desc="ablation", unit="structure")
    for k, batch in enumerate(batches):
        active = [i for i in range(len(runs)) if i not in stopped_at]
        if not active:
            break
        if forces is not None:  # the unablated forces (the adapter's own, when its last pass was on this batch)
            f = model.adapter.forces(model, batch)
            forces.add_base(k, f, batch.atom_batch, _atoms_of(batches, k), batch.n_structures)
        if acts is not None:  # the donors, computed now: never from inside an ablation's hooks
            acts[(k + 1) % len(batches)]
        for i in active:
            kind, (point, block, l, parity, edits) = runs[i]
            with hooked(model.module, edit_hooks(points, edits, built[kind].at(k))), \
                    grad_context(model.adapter.needs_grad):
                pred = (model.adapter.predict(model, batch, forces=True) if forces is not None else
                        model.adapter.predict(model, batch))
                if forces is not None:
                    fper[i].append(forces.per_batch(k, model.adapter.forces(model, batch)))
            preds[i].append(pred.detach().double().cpu())
            bar.update(batch.n_structures)
        done += batch.n_structures
        if done >= looks[look] and done < n_all:
            for i in active:
                if interim(scorers, per(i), done, level, threshold, n_boot, seed):
                    stopped_at[i] = done
                    bar.update(n_all - done)
            while look < len(looks) - 1 and done >= looks[look]:
                look += 1
    bar.close()
    rows = []
    for i, (kind, (point, block, l, parity, edits)) in enumerate(runs):
        n = stopped_at.get(i, done)
        for s, p in zip(scorers, per(i)):
            rows.append(dict(_row(point, block, l, parity, kind, s, p, seed, n_boot, n), edits=describe(edits)))
    rows += [dict(r, intervention="mean") for r in rows if r["intervention"] == "zero" and r["l"] > 0
             and "mean" in interventions]
    for l in higher if orders else []:
        removed = model.adapter.without_orders(model, [l])
        if removed is not None:
            per = scorer.per_structure(predict_all(removed, batches)[0])
            rows.append(dict(_row("all", f"l={l}", l, "", "removed", scorer, per, seed, n_boot, len(per)),
                             edits=f"surgery without l={l}"))
    return pd.DataFrame(rows)  # ``edits``: what each row rests on (a ``mean`` row of l > 0: the zero edits)


def _atoms_of(batches, k) -> torch.Tensor:
    """The rows, among all atoms of the scored structures, of batch ``k``'s atoms (batches are in order)."""
    start = sum(b.n_atoms for b in batches[:k])
    return torch.arange(start, start + batches[k].n_atoms)


def _row(point, block, l, parity, kind, scorer, per: np.ndarray, seed: int, n_boot: int, n: int) -> dict:
    rows = np.arange(n)
    base, value = float(scorer.base_per[:n].mean()), float(per[:n].mean())
    a, b = scorer.base_per[:n], per[:n]
    free, lo, hi = paired_bootstrap(a, b, scorer.scale, n_boot, seed)
    # the raw relative change has an interval too (for a shift it is the scale-free one): the threshold
    # applies to both, so that a model far better than its composition fit is not called unused on the
    # share alone while its error grows by more than the threshold
    raw = paired_bootstrap(a, b, lambda r: a[r].mean(), n_boot, seed)[1:] if scorer.kind == "error" else (lo, hi)
    return {"point": point, "block": block, "l": l, "parity": parity, "intervention": kind,
            "quantity": scorer.name, "score": scorer.kind, "mae": value, "base_mae": base,
            "utilisation": scorer.relative(value, base, rows), "utilisation_low": raw[0], "utilisation_high": raw[1],
            "scale_free": free, "scale_free_low": lo, "scale_free_high": hi, "scale": scorer.scale(rows),
            "structures": n}
