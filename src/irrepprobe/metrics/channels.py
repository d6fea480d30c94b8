"""How much each channel of a block matters, for pruning channels: its norm (what the capture's per-channel
norms and dead fraction rest on) and what removing it costs to first order.

Every channel of the points scored gets a multiplicative gate, one per structure and channel, held at 1.
The derivative of the output with respect to a gate is the first-order change of the output when the
channel is zeroed (gradient x activation, summed over the channel's 2l+1 components, so it is rotation
invariant). For the energy that is exact per structure in one backward pass (structures do not share
atoms); for the forces, whose change is a vector over every atom, the squared norm is estimated with
random projections (Hutchinson: ``E[(w . v)^2] = |v|^2`` for standard normal ``w``), each one a second
backward pass through the forces. ``score`` weighs the two as fine-tuning does (the per-atom energy over
its variance, the force components over their mean square): the Gauss-Newton estimate of how much the
fine-tuning loss toward the unpruned model grows when the channel is removed, before any fine-tuning."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from ..adapters import Loaded
from ..intervene import hooked, replacing
from ..irreps import blocks


def _channel_of_column(irreps) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """For the ``mul_ir`` columns of ``irreps``: the channel each belongs to, and the channels' names."""
    parts = blocks(irreps)
    col = torch.empty(sum(len(b.index) for b in parts), dtype=torch.long)
    names = []
    for b in parts:
        col[b.index] = len(names) + torch.arange(b.mul).repeat_interleave(b.dim)
        names += [(b.name, u) for u in range(b.mul)]
    return col, names


def channel_importance(model: Loaded, batches, points, probes: int = 2, seed: int = 0) -> pd.DataFrame:
    """Per (point, block, channel) of ``points``: ``norm`` (root mean square of the channel's norm over the
    point's rows), ``energy`` (root mean square over structures of the first-order change of the per-atom
    energy when the channel is zeroed), ``forces`` (the same over force components, from ``probes`` random
    projections per batch; NaN for a model without forces) and ``score`` (module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    adapter, keep_graph = model.adapter, model.adapter.keep_graph
    forces = adapter.has_forces
    cols = {p.name: _channel_of_column(p.irreps) for p in points}
    sums = defaultdict(lambda: 0.0)  # (point, "e"|"f"|"n"|"rows") -> [channels] or count
    n_struct = n_comp = 0
    e_all, f_sq = [], 0.0
    adapter.keep_graph = True
    try:
        for b in batches:
            index = {"node": b.atom_batch, "edge": b.edge_batch}
            gates = {p.name: torch.ones(b.n_structures, len(cols[p.name][1]), dtype=torch.float64,
                                        requires_grad=True) for p in points}
            seen = {}

            def fn_of(p):
                col, rows = cols[p.name][0], index[p.kind]

                def fn(x):
                    seen[p.name] = x.detach()
                    return x * gates[p.name].to(x)[rows.to(x.device)][:, col.to(x.device)]
                return fn
            with hooked(model.module, replacing(points, {p.name: fn_of(p) for p in points})), torch.enable_grad():
                energy = adapter.predict(model, b, forces=forces)
                f = adapter.forces(model, b) if forces else None
            n_atoms = torch.bincount(b.atom_batch.cpu(), minlength=b.n_structures).double()
            names = [p.name for p in points]
            leaves = [gates[n] for n in names]
            g_e = torch.autograd.grad(energy.sum(), leaves, retain_graph=forces, allow_unused=True)
            for n, g in zip(names, g_e):
                if g is not None:
                    sums[(n, "e")] = sums[(n, "e")] + ((g.detach().cpu() / n_atoms[:, None]) ** 2).sum(0)
            for k in range(probes if forces else 0):
                w = torch.randn(f.shape, generator=gen, dtype=torch.float64).to(f)
                g_f = torch.autograd.grad((f * w).sum(), leaves, retain_graph=k < probes - 1, allow_unused=True)
                for n, g in zip(names, g_f):
                    if g is not None:
                        sums[(n, "f")] = sums[(n, "f")] + (g.detach().cpu() ** 2).sum(0) / probes
            for p in points:
                x = seen.get(p.name)
                if x is not None:
                    col = cols[p.name][0].to(x.device)
                    sq = torch.zeros(x.shape[0], len(cols[p.name][1]), dtype=torch.float64, device=x.device)
                    sq.index_add_(1, col, x.double() ** 2)
                    sums[(p.name, "n")] = sums[(p.name, "n")] + sq.sum(0).cpu()
                    sums[(p.name, "rows")] += x.shape[0]
            e_all.append((energy.detach().double().cpu()[:, 0] / n_atoms))
            if forces:
                f_sq += float(f.detach().double().pow(2).sum())
                n_comp += f.numel()
            n_struct += b.n_structures
    finally:
        adapter.keep_graph = keep_graph
    e = torch.cat(e_all)
    e_var = float(e.var()) if len(e) > 1 and float(e.var()) > 1e-12 else float(e.pow(2).mean()) or 1.0
    f_ms = f_sq / n_comp if forces and f_sq > 0 else 1.0
    rows = []
    for p in points:
        nch = len(cols[p.name][1])
        zero = torch.zeros(nch, dtype=torch.float64)
        de = (sums.get((p.name, "e"), zero) / max(n_struct, 1)).sqrt().numpy()
        df = ((sums.get((p.name, "f"), zero) / n_comp).sqrt().numpy() if forces else np.full(nch, np.nan))
        norm = (sums.get((p.name, "n"), zero) / max(sums.get((p.name, "rows"), 0), 1)).sqrt().numpy()
        score = de ** 2 / e_var + (np.nan_to_num(df) ** 2 / f_ms if forces else 0.0)
        for k, (block, u) in enumerate(cols[p.name][1]):
            rows.append({"point": p.name, "block": block, "channel": u, "norm": norm[k], "energy": de[k],
                         "forces": df[k], "score": score[k]})
    return pd.DataFrame(rows)
