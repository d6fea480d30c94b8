"""First-order answers: gradient x activation per block, and whether a block reaches the output at all
(a gradient of any size), through :func:`~irrepprobe.intervene.keeping` hooks that keep each point's
tensor in the autograd graph."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded
from ..capture import blocks, hooked, keeping, to_mul_ir


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
