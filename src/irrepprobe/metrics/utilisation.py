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

from ..adapters import Loaded
from ..capture import Capture, blocks, hooked, keeping, model_of, structures_of, to_mul_ir, zeroing
from ..train.distributed import resolve_device
from .features import hidden_points

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
    """The number an ablation moves: the MAE against ``target`` (``error``), or without a target the
    shift of the prediction from ``base`` relative to its spread (``shift``)."""

    def __init__(self, base: torch.Tensor, target: np.ndarray | None, n_atoms: np.ndarray, per_atom: bool):
        self.base, self.kind = base, "error" if target is not None else "shift"
        self.target = None if target is None else torch.as_tensor(target, dtype=torch.float64)
        self.norm = torch.as_tensor(n_atoms, dtype=torch.float64)[:, None] if per_atom else torch.ones(1, 1)
        b = base / self.norm
        self.spread = float((b - b.mean(0)).abs().mean())

    def score(self, pred: torch.Tensor) -> float:
        if self.kind == "error":
            return float((pred - self.target).abs().mean())
        return float(((pred - self.base) / self.norm).abs().mean())

    def relative(self, value: float, base_value: float) -> float:
        if self.kind == "error":
            return (value - base_value) / base_value if base_value > 0 else float("nan")
        return value / self.spread if self.spread > 0 else float("nan")


def ablation(model: Loaded, batches, points, scorer: Scorer, orders: bool = True) -> pd.DataFrame:
    """Per (point, block): the score with the block zeroed, and relative to the unablated model. With
    ``orders``, also each order l > 0 zeroed at every point at once (point ``"all"``), which is what
    removing the order would take away (a redundant copy in another layer cannot stand in)."""
    base = scorer.score(scorer.base)
    rows = []

    def row(point, block, l, parity, zero):
        value = scorer.score(predictions(model, batches, zeroing(points, zero)))
        rows.append({"point": point, "block": block, "l": l, "parity": parity, "score": scorer.kind,
                     "mae": value, "base_mae": base, "utilisation": scorer.relative(value, base)})

    by_order = defaultdict(lambda: defaultdict(list))
    for p in points:
        for b in blocks(p.irreps):
            row(p.name, b.name, b.l, "e" if b.parity == 1 else "o", {p.name: [b.name]})
            by_order[b.l][p.name].append(b.name)
    if orders:
        for l in sorted(k for k in by_order if k > 0):
            row("all", f"l={l}", l, "", dict(by_order[l]))
    return pd.DataFrame(rows)


def grad_x_activation(model: Loaded, batches, points) -> pd.DataFrame:
    """Per (point, block): root mean square over structures of the first-order change of the output
    when the block is zeroed, ``|sum over rows and block features of grad * activation|`` (for a
    multi-component output the norm over components), in the output's units."""
    parts = {p.name: blocks(p.irreps) for p in points}
    sq, n = defaultdict(float), 0
    adapter, keep = model.adapter, model.adapter.keep_graph
    adapter.keep_graph = True
    try:
        _attribute(model, batches, points, parts, sq)
    finally:
        adapter.keep_graph = keep
    n = sum(b.n_structures for b in batches)
    return pd.DataFrame([{"point": p.name, "block": b.name, "grad_x_activation": np.sqrt(sq[(p.name, b.name)] / n)}
                         for p in points for b in parts[p.name]])


def _attribute(model: Loaded, batches, points, parts, sq) -> None:
    for batch in batches:
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
                for b in parts[p.name]:
                    atom = ga[:, b.index.to(ga.device)].sum(1)
                    mol = atom.new_zeros(pred.shape[0]).index_add_(0, rows, atom)
                    per[(p.name, b.name)] = per[(p.name, b.name)] + mol.double() ** 2
        for key, v in per.items():
            sq[key] += float(v.sum())


def utilisation(cap: Capture, model=None, molecules: int | None = 2000, device: str = "auto",
                batch_size: int = 64, cache_dir: str | None = None, trust: bool | None = None) -> pd.DataFrame:
    """Ablation utilisation and gradient x activation of every hidden point of ``cap``, on its first
    ``molecules`` structures, rerunning the captured model through its adapter."""
    loaded = model_of(cap, model, trust=trust, device=resolve_device(device))
    by_name = {p.name: p for p in loaded.adapter.points(loaded)}
    points = [by_name[p] for p in hidden_points(cap) if p in by_name]
    rows = np.arange(len(cap.arrays["index"]))[:molecules]
    structures = structures_of(cap, cache_dir).take(rows)
    batches = list(loaded.adapter.batches(loaded, structures, batch_size))
    base = predictions(loaded, batches)
    target = cap.arrays["target"][rows] if "target" in cap.arrays else None
    scorer = Scorer(base, target, cap.arrays["n_atoms"][rows], cap.meta["quantity"]["per_atom"])
    table = ablation(loaded, batches, points, scorer)
    gxa = grad_x_activation(loaded, batches, points)
    table = table.merge(gxa, on=["point", "block"], how="left")
    table["grad_x_activation_relative"] = table["grad_x_activation"] / (
        table["base_mae"] if scorer.kind == "error" else scorer.spread)
    table["molecules"] = len(rows)
    table["used"] = table["utilisation"] >= THRESHOLD
    return table
