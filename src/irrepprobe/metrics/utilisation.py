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
from ..train.distributed import resolve_device
from ..progress import progress
from .features import hidden_points
from .interventions import Intervention, activations, paired_bootstrap

# A block is "unused" when ablating it moves the score by less than 5 %. Ablation moves the error
# of a block the model relies on by tens to thousands of per cent; 5 % sits well below that and near
# the run-to-run spread of test error between seeds, so "unused" means "indistinguishable from noise".
THRESHOLD = 0.05


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
    composition baseline (``composition``: that baseline's predictions) or, for ``shift``, the spread."""

    def __init__(self, base: torch.Tensor, target: np.ndarray | None, n_atoms: np.ndarray, per_atom: bool,
                 composition: np.ndarray | None = None):
        self.base, self.kind = base, "error" if target is not None else "shift"
        self.target = None if target is None else torch.as_tensor(target, dtype=torch.float64)
        self.norm = torch.as_tensor(n_atoms, dtype=torch.float64)[:, None] if per_atom else torch.ones(1, 1)
        self.base_per = self.per_structure(base)
        self.comp_per = (None if target is None or composition is None else
                         np.abs(np.asarray(composition, np.float64) - np.asarray(target, np.float64)).mean(1))
        self._scaled = (base / self.norm).numpy()
        self.spread = self.spread_of(np.arange(len(base)))

    def per_structure(self, pred: torch.Tensor) -> np.ndarray:
        diff = pred - self.target if self.kind == "error" else (pred - self.base) / self.norm
        return diff.abs().mean(1).numpy()

    def spread_of(self, rows) -> float:
        b = self._scaled[rows]
        return float(np.abs(b - b.mean(0)).mean())

    def score(self, pred: torch.Tensor) -> float:
        return float(self.per_structure(pred).mean())

    def relative(self, value: float, base_value: float) -> float:
        if self.kind == "error":
            return (value - base_value) / base_value if base_value > 0 else float("nan")
        return value / self.spread if self.spread > 0 else float("nan")

    def scale(self, rows) -> float:
        """The denominator of the scale-free score on the structures ``rows``."""
        if self.kind == "shift":
            return self.spread_of(rows)
        if self.comp_per is None:
            return float("nan")
        return float(self.comp_per[rows].mean() - self.base_per[rows].mean())


def ablation(model: Loaded, batches, points, scorer: Scorer, orders: bool = True,
             interventions=("zero",), seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """Per (point, block, intervention): the score with the block replaced, raw and scale-free with a
    paired bootstrap interval over structures. With ``orders``, also each order l > 0 replaced at every
    point at once (point ``"all"``: a redundant copy in another layer cannot stand in) and, where the
    family can build it, the order truly removed (intervention ``removed``: spherical harmonics and
    every path through the order switched off, which joint replacement leaves in place)."""
    acts = activations(model, batches, points) if set(interventions) - {"zero"} else None
    rows = []
    by_order = defaultdict(lambda: defaultdict(list))
    for p in points:
        for b in blocks(p.irreps):
            by_order[b.l][p.name].append(b.name)
    targets = [(p.name, b.name, b.l, "e" if b.parity == 1 else "o", {p.name: [b.name]})
               for p in points for b in blocks(p.irreps)]
    if orders:
        targets += [("all", f"l={l}", l, "", dict(by_order[l])) for l in sorted(k for k in by_order if k > 0)]
    bar = progress(total=len(interventions) * len(targets), desc="ablation")
    for kind in interventions:
        act = Intervention(kind, points, acts, batches, seed)
        for point, block, l, parity, replace in targets:
            bar.update()
            per = scorer.per_structure(_run(model, batches, act, replace))
            rows.append(_row(point, block, l, parity, kind, scorer, per, seed, n_boot))
    bar.close()
    for l in sorted(k for k in by_order if k > 0) if orders else []:
        removed = model.adapter.without_orders(model, [l])
        if removed is not None:
            per = scorer.per_structure(predictions(removed, batches))
            rows.append(_row("all", f"l={l}", l, "", "removed", scorer, per, seed, n_boot))
    return pd.DataFrame(rows)


def _row(point, block, l, parity, kind, scorer: Scorer, per: np.ndarray, seed: int, n_boot: int) -> dict:
    base, value = scorer.score(scorer.base), float(per.mean())
    free, lo, hi = paired_bootstrap(scorer.base_per, per, scorer.scale, n_boot, seed)
    return {"point": point, "block": block, "l": l, "parity": parity, "intervention": kind,
            "score": scorer.kind, "mae": value, "base_mae": base, "utilisation": scorer.relative(value, base),
            "scale_free": free, "scale_free_low": lo, "scale_free_high": hi}



def _run(model: Loaded, batches, act: Intervention, replace) -> torch.Tensor:
    out = []
    with hooked(model.module, act.hooks(replace)), _grad_context(model):
        for k, batch in enumerate(batches):
            act.index = k
            out.append(model.adapter.predict(model, batch).detach().double().cpu())
    return torch.cat(out)


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
    """Per (point, block): whether any output depends on it: a gradient not identically zero on the
    first ``n`` structures or on the same structures with randomly displaced atoms. A block with none
    is unreachable by construction (e.g. l > 0 of the last layer before a linear readout of a scalar)."""
    parts = {p.name: blocks(p.irreps) for p in points}
    top = defaultdict(float)
    some = structures.take(np.arange(min(n, len(structures))))
    moved = some.take(np.arange(len(some)))
    gen = torch.Generator().manual_seed(seed)
    moved.pos = some.pos + jitter * torch.randn(some.pos.shape, generator=gen, dtype=some.pos.dtype)
    for s in (some, moved):
        _attribute(model, list(model.adapter.batches(model, s, 16)), points, parts, defaultdict(float), top)
    return {(p.name, b.name): top[(p.name, b.name)] > 0 for p in points for b in parts[p.name]}


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
    with hooked(model.module, keeping(points, store)), torch.enable_grad():
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
    y = cap.targets
    A = np.c_[cap.arrays["composition"], np.ones(len(y))]
    fit = A @ np.linalg.lstsq(A, y, rcond=None)[0]
    irreps = o3.Irreps(cap.meta["quantity"]["irreps"])
    if irreps.dim == y.shape[1]:
        for s, (_, ir) in zip(irreps.slices(), irreps):
            if ir.l > 0:
                fit[:, s] = 0
    return fit


def verdicts(table: pd.DataFrame, threshold: float = THRESHOLD) -> pd.Series:
    """Per row: is its (point, block) used? Unreachable blocks never are; a reachable block is unused
    when the upper end of its scale-free interval is below ``threshold`` under every intervention."""
    high = table.groupby(["point", "block"])["scale_free_high"].transform("max")
    return table["reachable"] & (high >= threshold)


def utilisation(cap: Capture, model=None, molecules: int | None = 2000, device: str = "auto",
                batch_size: int = 64, cache_dir: str | None = None, trust: bool | None = None,
                interventions=("zero",), threshold: float = THRESHOLD, seed: int = 0,
                n_boot: int = 1000) -> pd.DataFrame:
    """Ablation utilisation (raw and scale-free with paired bootstrap intervals, under each of
    ``interventions``), gradient x activation and reachability of every hidden point of ``cap``, on its
    first ``molecules`` structures, rerunning the captured model through its adapter."""
    loaded = model_of(cap, model, trust=trust, device=resolve_device(device))
    by_name = {p.name: p for p in loaded.adapter.points(loaded)}
    points = [by_name[p] for p in hidden_points(cap) if p in by_name]
    rows = np.arange(len(cap.arrays["index"]))[:molecules]
    structures = structures_of(cap, cache_dir).take(rows)
    batches = list(loaded.adapter.batches(loaded, structures, batch_size))
    base = predictions(loaded, batches)
    target = cap.arrays["target"][rows] if "target" in cap.arrays else None
    comp = composition_baseline(cap)
    scorer = Scorer(base, target, cap.arrays["n_atoms"][rows], cap.meta["quantity"]["per_atom"],
                    None if comp is None else comp[rows])
    table = ablation(loaded, batches, points, scorer, interventions=interventions, seed=seed, n_boot=n_boot)
    gxa = grad_x_activation(loaded, batches, points)
    table = table.merge(gxa, on=["point", "block"], how="left")
    table["grad_x_activation_relative"] = table["grad_x_activation"] / (
        table["base_mae"] if scorer.kind == "error" else scorer.spread)
    reach = reachable(loaded, structures, points, seed=seed)
    table["reachable"] = [reach.get((p, b), True) for p, b in zip(table["point"], table["block"])]
    table["molecules"] = len(rows)
    table["used"] = verdicts(table, threshold)
    return table
