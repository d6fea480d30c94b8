"""Does the model use a block? Causal answer by ablation, first-order answer by gradient x activation.

Both rerun the captured model through its adapter and go through the capture hooks
(:func:`irrepprobe.capture.hooked`): ablation zeroes a block at its point so every later module sees
zero; attribution keeps the point's tensor in the autograd graph.

Two scores, by what the data holds:

* ``error``: the structures carry a label of the model's own quantity: the relative increase of the
  MAE, ``(mae_ablated - mae) / mae``;
* ``shift``: no such label (e.g. a PBE potential on QM9's B3LYP molecules): how far ablation moves the
  model's own prediction, the mean absolute change (per atom for extensive quantities such as energy)
  over the mean absolute deviation of the prediction over the data.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch
from e3nn import o3

from ..adapters import Loaded
from ..capture import Capture, blocks, hooked, keeping, model_of, structures_of, to_mul_ir
from ..runtime import resolve_device
from ..progress import progress
from ..errors import IrrepprobeError
from .denominators import apply_checks, denominator_checks
from .features import hidden_points
from .verdicts import THRESHOLD, outcomes, verdicts
from .interventions import Activations, Intervention, leading, paired_bootstrap

def _grad_context(model: Loaded):
    return torch.enable_grad() if model.adapter.needs_grad else torch.no_grad()


def predictions(model: Loaded, batches, hooks=()) -> torch.Tensor:
    """[structures, k] predictions over ``batches`` with ``hooks`` in place."""
    out = []
    with hooked(model.module, hooks), _grad_context(model):
        for batch in batches:
            out.append(model.adapter.predict(model, batch).detach().double().cpu())
    return torch.cat(out)


class Scorer:
    """What an ablation moves, per structure: the absolute error against ``target`` (``error``), or
    without a target the absolute shift of the prediction from ``base`` (``shift``, per atom for
    extensive quantities). Two scores of a change: raw, relative to the unablated error (or to the
    prediction's spread for ``shift``); scale-free, relative to what the model learned beyond the
    composition baseline (``composition``: that baseline's predictions) or, for ``shift``, the spread.
    Predictions may cover only the first rows (a sequential ablation stopped early): every score is over
    the rows given."""

    def __init__(self, base: torch.Tensor, target: np.ndarray | None, n_atoms: np.ndarray, per_atom: bool,
                 composition: np.ndarray | None = None, name: str = "energy"):
        self.base, self.kind, self.name = base, "error" if target is not None else "shift", name
        self.target = None if target is None else torch.as_tensor(target, dtype=torch.float64)
        self.norm = torch.as_tensor(n_atoms, dtype=torch.float64)[:, None] if per_atom else torch.ones(len(base), 1)
        self.base_per = self.per_structure(base)
        self.comp_per = (None if target is None or composition is None else
                         np.abs(np.asarray(composition, np.float64) - np.asarray(target, np.float64)).mean(1))
        self._scaled = (base / self.norm).numpy()
        self.spread = self.spread_of(np.arange(len(base)))

    def per_structure(self, pred: torch.Tensor) -> np.ndarray:
        n = len(pred)
        diff = pred - self.target[:n] if self.kind == "error" else (pred - self.base[:n]) / self.norm[:n]
        return diff.abs().mean(1).numpy()

    def spread_of(self, rows) -> float:
        b = self._scaled[rows]
        return float(np.abs(b - b.mean(0)).mean())

    def score(self, pred: torch.Tensor) -> float:
        return float(self.per_structure(pred).mean())

    def relative(self, value: float, base_value: float, rows=None) -> float:
        if self.kind == "error":
            return (value - base_value) / base_value if base_value > 0 else float("nan")
        spread = self.spread if rows is None else self.spread_of(rows)
        return value / spread if spread > 0 else float("nan")

    def scale(self, rows) -> float:
        """The denominator of the scale-free score on the structures ``rows``."""
        if self.kind == "shift":
            return self.spread_of(rows)
        if self.comp_per is None:
            return float("nan")
        return float(self.comp_per[rows].mean() - self.base_per[rows].mean())


class ForceScorer:
    """The same two scores for forces, built batch by batch (forces cost a backward pass, so only the
    structures a sequential ablation reaches get them). Per structure: the mean absolute force component
    error against ``labels`` (``error``; scale-free against the zero-force baseline, which is what a fit
    on element counts predicts for forces: ``(MAE ablated - MAE) / (mean |F| - MAE)``), or without labels
    the mean absolute change of the model's own force components (``shift``), relative to their root mean
    square over the structures (raw and scale-free are then the same number)."""

    def __init__(self, labels: np.ndarray | None = None, name: str = "forces"):
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.float64)
        self.kind, self.name = ("error" if labels is not None else "shift"), name
        self._ref, self._base, self._zero, self._sq, self._count = {}, [], [], [], []

    def add_base(self, k: int, forces: torch.Tensor, atom_batch: torch.Tensor, atoms: torch.Tensor, n: int) -> None:
        """Batch ``k``'s unablated forces; ``atoms``: the rows of its atoms in the scored structures."""
        f = forces.detach().double().cpu()
        ref = self.labels[atoms] if self.labels is not None else f
        self._ref[k] = (ref, atom_batch.cpu(), n)
        self._base.append(self._per(f, k))
        self._zero.append(self._per(torch.zeros_like(f), k))
        sq = torch.zeros(n, dtype=torch.float64).index_add_(0, atom_batch.cpu(), f.pow(2).sum(1))
        self._sq.append(sq.numpy())
        self._count.append(3 * torch.bincount(atom_batch.cpu(), minlength=n).double().numpy())

    def _per(self, f: torch.Tensor, k: int) -> np.ndarray:
        ref, batch, n = self._ref[k]
        dev = (f.detach().double().cpu() - ref).abs().sum(1)
        atoms = torch.bincount(batch, minlength=n).double().clamp(min=1)
        return (torch.zeros(n, dtype=torch.float64).index_add_(0, batch, dev) / (3 * atoms)).numpy()

    def per_batch(self, k: int, forces: torch.Tensor) -> np.ndarray:
        return self._per(forces, k)

    @property
    def base_per(self) -> np.ndarray:
        return np.concatenate(self._base)

    def rms(self, rows) -> float:
        sq, count = np.concatenate(self._sq), np.concatenate(self._count)
        return float(np.sqrt(sq[rows].sum() / max(count[rows].sum(), 1)))

    def relative(self, value: float, base_value: float, rows=None) -> float:
        if self.kind == "error":
            return (value - base_value) / base_value if base_value > 0 else float("nan")
        rms = self.rms(np.arange(len(self.base_per)) if rows is None else rows)
        return value / rms if rms > 0 else float("nan")

    def scale(self, rows) -> float:
        if self.kind == "shift":
            return self.rms(rows)
        return float(np.concatenate(self._zero)[rows].mean() - self.base_per[rows].mean())


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
    by_order = defaultdict(lambda: defaultdict(list))
    for p in points:
        for b in blocks(p.irreps):
            by_order[b.l][p.name].append(b.name)
    targets = [(p.name, b.name, b.l, "e" if b.parity == 1 else "o", {p.name: [b.name]})
               for p in points for b in blocks(p.irreps)]
    if orders:
        targets += [("all", f"l={l}", l, "", dict(by_order[l])) for l in sorted(k for k in by_order if k > 0)]
    runs = [(kind, t) for kind in interventions for t in targets if not (kind == "mean" and t[2] > 0)]
    built = {kind: Intervention(kind, points, acts, batches, seed, means=means, first=looks[0], numbers=numbers)
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
            kind, (point, block, l, parity, replace) = runs[i]
            act = built[kind]
            act.index = k
            with hooked(model.module, act.hooks(replace)), _grad_context(model):
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
    for i, (kind, (point, block, l, parity, _)) in enumerate(runs):
        n = stopped_at.get(i, done)
        for s, p in zip(scorers, per(i)):
            rows.append(_row(point, block, l, parity, kind, s, p, seed, n_boot, n))
    rows += [dict(r, intervention="mean") for r in rows if r["intervention"] == "zero" and r["l"] > 0
             and "mean" in interventions]
    for l in sorted(k for k in by_order if k > 0) if orders else []:
        removed = model.adapter.without_orders(model, [l])
        if removed is not None:
            per = scorer.per_structure(predictions(removed, batches))
            rows.append(_row("all", f"l={l}", l, "", "removed", scorer, per, seed, n_boot, len(per)))
    return pd.DataFrame(rows)


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


def grad_x_activation(model: Loaded, batches, points) -> pd.DataFrame:
    """Per (point, block): root mean square over structures of the first-order change of the output
    when the block is zeroed, ``|sum over rows and block features of grad * activation|`` (for a
    multi-component output the norm over components), in the output's units; and the largest
    absolute gradient seen (``max_abs_grad``)."""
    parts = {p.name: blocks(p.irreps) for p in points}
    sq, top = defaultdict(float), defaultdict(float)
    _attribute(model, batches, points, parts, sq, top)
    n = sum(b.n_structures for b in batches)
    return pd.DataFrame([{"point": p.name, "block": b.name, "grad_x_activation": np.sqrt(sq[(p.name, b.name)] / n),
                          "max_abs_grad": top[(p.name, b.name)]} for p in points for b in parts[p.name]])


def reachable(model: Loaded, structures, points, n: int = 32, jitter: float = 0.1, seed: int = 0) -> dict:
    """Per (point, block): whether any output depends on it: a gradient above :data:`REACH_TOLERANCE` of
    the largest gradient of any block, on the first ``n`` structures or on the same structures with
    randomly displaced atoms. A block with none is unreachable by construction (e.g. l > 0 of the last
    layer before a linear readout of a scalar)."""
    parts = {p.name: blocks(p.irreps) for p in points}
    top = defaultdict(float)
    some = structures.take(np.arange(min(n, len(structures))))
    moved = some.take(np.arange(len(some)))
    gen = torch.Generator().manual_seed(seed)
    moved.pos = some.pos + jitter * torch.randn(some.pos.shape, generator=gen, dtype=some.pos.dtype)
    for s in (some, moved):
        _attribute(model, list(model.adapter.batches(model, s, 16)), points, parts, defaultdict(float), top)
    floor = REACH_TOLERANCE * max(top.values(), default=0.0)
    return {(p.name, b.name): top[(p.name, b.name)] > floor for p in points for b in parts[p.name]}


# A block's largest gradient below this share of the largest over every block is no gradient: rounding in
# float32 arithmetic (a gradient of 1e-16 next to ones of 1e-2) is not a path from the block to the output
REACH_TOLERANCE = 1e-10


def _attribute(model: Loaded, batches, points, parts, sq, top) -> None:
    adapter, keep = model.adapter, model.adapter.keep_graph
    adapter.keep_graph = True  # families whose force step frees the graph keep it for this pass
    try:
        for batch in batches:
            _attribute_batch(model, batch, points, parts, sq, top)
    finally:
        adapter.keep_graph = keep


def _attribute_batch(model: Loaded, batch, points, parts, sq, top) -> None:
    store: dict[str, torch.Tensor] = {}
    with hooked(model.module, keeping(points, store, grad=True)), torch.enable_grad():
        pred = model.adapter.predict(model, batch)
    present = [p for p in points if p.name in store and store[p.name].requires_grad]
    acts = [store[p.name] for p in present]
    index = {"node": batch.atom_batch, "edge": batch.edge_batch}
    per = defaultdict(lambda: 0.0)
    for d in range(pred.shape[1]):
        grads = torch.autograd.grad(pred[:, d].sum(), acts, retain_graph=True, allow_unused=True)
        for p, a, g in zip(present, acts, grads):
            rows = index[p.kind]
            if g is None or rows is None or a.shape[0] != rows.numel():
                continue
            ga = to_mul_ir((g * a).detach(), p.irreps, p.layout)
            gm = to_mul_ir(g.detach(), p.irreps, p.layout).abs()
            for b in parts[p.name]:
                cols = b.index.to(ga.device)
                top[(p.name, b.name)] = max(top[(p.name, b.name)], float(gm[:, cols].max()) if len(gm) else 0.0)
                mol = ga.new_zeros(pred.shape[0]).index_add_(0, rows, ga[:, cols].sum(1))
                per[(p.name, b.name)] = per[(p.name, b.name)] + mol.double() ** 2
    for key, v in per.items():
        sq[key] += float(v.sum())


def composition_baseline(cap: Capture) -> np.ndarray | None:
    """[structures, k] the least-squares fit of the capture's target on element counts (and a constant),
    over all captured structures; zero for l > 0 components (no composition fit is equivariant). None
    without a target."""
    if "target" not in cap.arrays:
        return None
    A = np.c_[cap.arrays["composition"], np.ones(len(cap.targets))]
    return composition_fit(A, cap.targets, A, cap.meta["quantity"]["irreps"])


def composition_fit(A_fit: np.ndarray, y_fit: np.ndarray, A_at: np.ndarray, irreps) -> np.ndarray:
    """[rows of ``A_at``, k] the least-squares fit of ``y_fit`` on the element counts (and constant) ``A_fit``,
    at ``A_at``; zero for the l > 0 components of ``irreps`` (no composition fit is equivariant)."""
    y_fit = np.asarray(y_fit, dtype=np.float64).reshape(len(A_fit), -1)
    fit = A_at @ np.linalg.lstsq(A_fit, y_fit, rcond=None)[0]
    irreps = o3.Irreps(irreps)
    if irreps.dim == y_fit.shape[1]:
        for s, (_, ir) in zip(irreps.slices(), irreps):
            if ir.l > 0:
                fit[:, s] = 0
    return fit


QUANTITIES = ("energy", "forces", "both")
# A block below this share of its point's mean squared norm, whose first-order effect on the output is
# below DEGENERATE_EFFECT of the error (or spread), is degenerate: a collapsed block (norms of 1e-40 with
# gradients of 1e-16), neither used nor a finding about "unused"
DEGENERATE_SHARE, DEGENERATE_EFFECT = 1e-12, 1e-9


def degenerate(cap: Capture, table: pd.DataFrame) -> list[bool]:
    """Per row of ``table``: whether its block is degenerate (negligible norms and gradients)."""
    share = cap.summary.set_index(["point", "block"])["norm_share"]
    effect = table["grad_x_activation_relative"].fillna(0).abs()
    return [p != "all" and float(share.get((p, b), 1.0)) < DEGENERATE_SHARE and e < DEGENERATE_EFFECT
            for p, b, e in zip(table["point"], table["block"], effect)]


def capture_means(cap: Capture, points) -> dict[str, torch.Tensor]:
    """Per node point, the per-channel mean over every captured atom of its l = 0 columns (zero for
    l > 0: their rotation average), from the capture's pooled sums: the ``mean`` intervention's baseline
    without a pass over the data."""
    atoms = float(cap.arrays["n_atoms"].sum())
    out = {}
    for p in points:
        if p.kind != "node" or p.name not in cap.meta["points"]:
            continue
        mean = torch.zeros(p.irreps.dim, dtype=torch.float64)
        for b in blocks(p.irreps):
            if b.l == 0:
                mean[b.index] = torch.as_tensor(cap.pooled(p.name, b.name, "value_sum").sum(0) / atoms,
                                                dtype=torch.float64)
        out[p.name] = mean
    return out


def utilisation(cap: Capture, model=None, molecules: int | None = 2000, device: str = "auto",
                batch_size: int = 64, cache_dir: str | None = None, trust: bool | None = None,
                interventions=("zero",), threshold: float = THRESHOLD, seed: int = 0,
                n_boot: int = 1000, quantity: str = "both", first_look: int | None = None,
                attribution_molecules: int | None = None) -> pd.DataFrame:
    """Ablation utilisation (raw and scale-free with paired bootstrap intervals, under each of
    ``interventions``), gradient x activation and reachability of every hidden point of ``cap``, on its
    first ``molecules`` structures, rerunning the captured model through its adapter.

    ``quantity``: ``energy`` (the model's own quantity), ``forces`` or ``both`` (forces only where the
    family computes them: against the data's per-atom ``forces`` label when it has one, else the shift
    of the model's own forces). ``first_look``: the sequential rule of :func:`ablation` (None: every
    ablation on every structure). ``attribution_molecules``: gradient x activation on the first so many
    (default: all). Rows whose denominator degenerates are flagged by :func:`denominator_checks`, which
    leaves their relative and scale-free numbers out."""
    if quantity not in QUANTITIES:
        raise IrrepprobeError(f"unknown quantity {quantity!r}; valid: {', '.join(QUANTITIES)}")
    loaded = model_of(cap, model, trust=trust, device=resolve_device(device))
    if quantity == "forces" and not loaded.adapter.has_forces:
        raise IrrepprobeError(f"--quantity forces: the {loaded.adapter.name} family computes no forces")
    by_name = {p.name: p for p in loaded.adapter.points(loaded)}
    points = [by_name[p] for p in hidden_points(cap) if p in by_name]
    rows = np.arange(len(cap.arrays["index"]))[:molecules]
    structures = structures_of(cap, cache_dir).take(rows)
    batches = list(loaded.adapter.batches(loaded, structures, batch_size))
    base = predictions(loaded, batches)
    target = cap.arrays["target"][rows] if "target" in cap.arrays else None
    comp = composition_baseline(cap)
    scorer = Scorer(base, target, cap.arrays["n_atoms"][rows], cap.meta["quantity"]["per_atom"],
                    None if comp is None else comp[rows], name=cap.meta["quantity"]["name"])
    forces = None
    if quantity in ("forces", "both") and loaded.adapter.has_forces and loaded.adapter.forces(loaded, batches[0]) is not None:
        labels = structures.atom_labels.get("forces")
        forces = ForceScorer(labels if labels is not None and labels.shape[1:] == (3,) else None)
    table = ablation(loaded, batches, points, scorer, interventions=interventions, seed=seed, n_boot=n_boot,
                     forces=forces, first_look=first_look, threshold=threshold, means=capture_means(cap, points),
                     numbers=structures.numbers)
    if quantity == "forces":
        table = table[table["quantity"] == "forces"].reset_index(drop=True)
    gxa = grad_x_activation(loaded, leading(batches, attribution_molecules), points)
    table = table.merge(gxa, on=["point", "block"], how="left")
    table["grad_x_activation_relative"] = table["grad_x_activation"] / (
        table["base_mae"] if scorer.kind == "error" else scorer.spread)
    reach = reachable(loaded, structures, points, seed=seed)
    table["reachable"] = [reach.get((p, b), True) for p, b in zip(table["point"], table["block"])]
    table["degenerate"] = degenerate(cap, table)
    table["molecules"] = len(rows)
    table = apply_checks(table, denominator_checks(cap, table))
    table["used"] = verdicts(table, threshold)
    table["dependence"] = outcomes(table, threshold)
    return table
