"""Does the model use a block? Causal answer by ablation, first-order answer by gradient x activation.

Both go through the capture hooks (:func:`irrepprobe.capture.hooked`): ablation zeroes a block at its
point so every later module sees zero; attribution keeps the point's output in the autograd graph.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch
from e3nn import o3

from ..capture import Capture, blocks, checkpoint_of, hooked, keeping, zeroing
from ..config import Config
from ..data import load_qm9, loader, target_values
from ..train.checkpoint import load_checkpoint, model_from_checkpoint
from ..train.distributed import resolve_device
from .features import hidden_points

# A block is "unused" when zeroing it raises the test error by less than 5 %. Ablation moves the error
# of a block the model relies on by tens to thousands of per cent; 5 % sits well below that and near
# the run-to-run spread of test error between seeds, so "unused" means "indistinguishable from noise".
THRESHOLD = 0.05


def _mae(model, batches, hooks) -> float:
    err, count = 0.0, 0
    with hooked(model, hooks), torch.no_grad():
        for batch in batches:
            diff = model(batch) - batch.y
            err += float(diff.abs().sum())
            count += diff.numel()
    return err / count


def ablation(model, batches, points: dict[str, o3.Irreps], orders: bool = True) -> pd.DataFrame:
    """Relative increase of the MAE over ``batches`` when each (point, block) is zeroed. With
    ``orders``, also each order l > 0 zeroed at every point at once (point ``"all"``), which is what
    removing the order would take away (a redundant copy in another layer cannot stand in)."""
    base = _mae(model, batches, {})
    rows = []

    def row(point, block, l, parity, zero):
        mae = _mae(model, batches, zeroing(points, zero))
        rows.append({"point": point, "block": block, "l": l, "parity": parity, "mae": mae, "base_mae": base,
                     "utilisation": (mae - base) / base if base > 0 else float("nan")})

    by_order = defaultdict(lambda: defaultdict(list))
    for p, irreps in points.items():
        for b in blocks(irreps):
            row(p, b.name, b.l, "e" if b.parity == 1 else "o", {p: [b.name]})
            by_order[b.l][p].append(b.name)
    if orders:
        for l in sorted(k for k in by_order if k > 0):
            row("all", f"l={l}", l, "", dict(by_order[l]))
    return pd.DataFrame(rows)


def grad_x_activation(model, batches, points: dict[str, o3.Irreps]) -> pd.DataFrame:
    """Per (point, block): root mean square over molecules of the first-order change of the output
    when the block is zeroed, ``|sum over atoms and block features of grad * activation|`` (for a
    multi-component output the norm over components), in target units."""
    parts = {p: blocks(ir) for p, ir in points.items()}
    sq, n = defaultdict(float), 0
    for batch in batches:
        store: dict[str, torch.Tensor] = {}
        with hooked(model, keeping(points, store)), torch.enable_grad():
            pred = model(batch)
        acts = [store[p] for p in points]
        per = defaultdict(lambda: 0.0)
        for d in range(pred.shape[1]):
            grads = torch.autograd.grad(pred[:, d].sum(), acts, retain_graph=d < pred.shape[1] - 1,
                                        allow_unused=True)
            for p, a, g in zip(points, acts, grads):
                if g is None or a.shape[0] != batch.batch.numel():  # unused, or not one row per atom
                    continue
                ga = (g * a).detach()
                for b in parts[p]:
                    atom = ga[:, b.index.to(ga.device)].sum(1)
                    mol = atom.new_zeros(pred.shape[0]).index_add_(0, batch.batch, atom)
                    per[(p, b.name)] = per[(p, b.name)] + mol.double() ** 2
        for key, v in per.items():
            sq[key] += float(v.sum())
        n += pred.shape[0]
    return pd.DataFrame([{"point": p, "block": b.name, "grad_x_activation": np.sqrt(sq[(p, b.name)] / n)}
                         for p in points for b in parts[p]])


def utilisation(cap: Capture, checkpoint=None, molecules: int | None = 2000, device: str = "auto",
                batch_size: int = 128, cache_dir: str | None = None) -> pd.DataFrame:
    """Ablation utilisation and gradient x activation of every hidden point of ``cap``, on the first
    ``molecules`` molecules of the captured split, with the capture's checkpoint."""
    ckpt = load_checkpoint(checkpoint_of(cap, checkpoint))
    config = Config.from_dict(ckpt["config"])
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    points = {p: o3.Irreps(cap.meta["points"][p]["irreps"]) for p in hidden_points(cap)}
    qm9 = load_qm9(cache_dir or config.data.cache_dir)
    idx = torch.as_tensor(cap.arrays["index"][:molecules])
    batches = [b.to(dev) for b in loader(qm9, target_values(qm9, config.data.target), idx, batch_size)]
    table = ablation(model, batches, points)
    gxa = grad_x_activation(model, batches, points)
    table = table.merge(gxa, on=["point", "block"], how="left")
    table["grad_x_activation_relative"] = table["grad_x_activation"] / table["base_mae"]
    table["molecules"] = len(idx)
    table["used"] = table["utilisation"] >= THRESHOLD
    return table
