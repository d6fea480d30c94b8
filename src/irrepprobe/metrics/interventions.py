"""Interventions on a block, and scores with paired bootstrap intervals over structures.

An ablation replaces one block at one point, for the rest of the forward pass, by a baseline:

* ``zero``: zeros;
* ``mean``: the per-channel mean over the data for l = 0; for l > 0 the rotation average, which is zero;
* ``resample``: the block of another structure of the data (atom by atom, each atom taking an atom of its
  own element where the atomic numbers are given, cycling over them),
  randomly rotated for l > 0 with the Wigner-D matrices of the block, so that equivariance holds and the
  replacement carries no information about the structure it lands in.

Each replacement runs over the same structures as the unablated model, so scores are paired: a
bootstrap over structures resamples both sides together.
"""
from __future__ import annotations

import numpy as np
import torch
from e3nn import o3

from ..adapters import Loaded
from ..capture import blocks, hooked, keeping, to_mul_ir
from ..irreps import random_rotations
from ..errors import IrrepprobeError

INTERVENTIONS = ("zero", "mean", "resample")


def _batch_activations(model: Loaded, batch, points) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}
    grad = torch.enable_grad() if model.adapter.needs_grad else torch.no_grad()
    with hooked(model.module, keeping(points, store)), grad:
        model.adapter.predict(model, batch)
    return {p.name: to_mul_ir(store[p.name], p.irreps, p.layout).detach() for p in points if p.name in store}


def activations(model: Loaded, batches, points) -> list[dict[str, torch.Tensor]]:
    """Per batch, each point's tensor in ``mul_ir`` (detached): the donors of ``resample`` and the
    data of ``mean``."""
    return [_batch_activations(model, b, points) for b in batches]


class Activations:
    """:func:`activations`, computed batch by batch when first asked for (an energy-only pass each), so
    that a sequential ablation that stops early never runs the batches it does not reach."""

    def __init__(self, model: Loaded, batches, points):
        self.model, self.batches, self.points, self._done = model, batches, points, {}

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        if k not in self._done:
            self._done[k] = _batch_activations(self.model, self.batches[k], self.points)
        return self._done[k]

    def __iter__(self):
        return (self[k] for k in range(len(self)))


def leading(batches, n: int | None) -> list:
    """The first batches, up to the one that holds structure ``n`` (all of them when ``n`` is None)."""
    out, seen = [], 0
    for b in batches:
        if n is not None and seen >= n:
            break
        out.append(b)
        seen += b.n_structures
    return out


def channel_means(acts, points) -> dict[str, torch.Tensor]:
    """Per point, the mean over all rows of every l = 0 column, zero for l > 0 columns."""
    means = {}
    for p in points:
        rows = [a[p.name] for a in acts if p.name in a]
        if not rows:
            continue
        total = torch.cat(rows).double().mean(0)
        scalar = torch.zeros(p.irreps.dim, dtype=torch.bool)
        for b in blocks(p.irreps):
            if b.l == 0:
                scalar[b.index] = True
        means[p.name] = torch.where(scalar, total, torch.zeros_like(total))
    return means


class Baselines:
    """Where ``mean`` and ``resample`` edits take their values from, batch by batch (``resample`` draws its
    donors from the next batch): :meth:`at` gives batch ``k``'s baseline for
    :func:`~irrepprobe.intervene.edit_hooks`."""

    def __init__(self, kind: str, points, acts, batches, seed: int = 0, means: dict | None = None,
                 first: int | None = None, numbers: torch.Tensor | None = None):
        """``means``: per point, the data's per-channel means (e.g. from the capture); points without
        one get theirs from the activations of the batches that hold the first ``first`` structures
        (all batches when None). ``numbers``: the atomic number of every atom of the batches, in order:
        ``resample`` then gives each atom a donor atom of its own element."""
        if kind not in INTERVENTIONS:
            raise IrrepprobeError(f"unknown intervention {kind!r}; valid: {', '.join(INTERVENTIONS)}")
        self.kind, self.points = kind, {p.name: p for p in points}
        self.acts, self.batches, self.seed = acts, batches, seed
        self.numbers = None
        if numbers is not None:
            ends = np.cumsum([0] + [b.n_atoms for b in batches])
            self.numbers = [torch.as_tensor(numbers[ends[k]:ends[k + 1]]).cpu() for k in range(len(batches))]
        self.means = None
        if kind == "mean":
            self.means = dict(means or {})
            missing = [p for p in points if p.name not in self.means]
            if missing:
                self.means.update(channel_means([acts[j] for j in range(len(leading(batches, first)))], missing))

    def at(self, k: int) -> "_AtBatch":
        """The baseline while batch ``k`` runs."""
        return _AtBatch(self, k)

    def donor(self, b: int, p, chosen, rows: int) -> torch.Tensor:
        """Rows of the next batch's structures (structure i takes structure i + 1's; with one batch, its
        neighbour's) while batch ``b`` runs, cycled over their atoms (or edges; atoms of the recipient's element when the atomic
        numbers are known), each structure's l > 0 blocks rotated by its own random rotation."""
        here, there = self.batches[b], self.batches[(b + 1) % len(self.batches)]
        donor = self.acts[(b + 1) % len(self.batches)][p.name]
        kind = p.kind
        mine = here.atom_batch if kind == "node" else here.edge_batch
        theirs = there.atom_batch if kind == "node" else there.edge_batch
        mine, theirs = mine.cpu(), theirs.cpu()
        n_mine, n_theirs = here.n_structures, there.n_structures
        count_t = torch.bincount(theirs, minlength=n_theirs)
        start_t = torch.cumsum(count_t, 0) - count_t
        count_m = torch.bincount(mine, minlength=n_mine)
        start_m = torch.cumsum(count_m, 0) - count_m
        src = (mine + 1) % n_theirs  # another structure, also when the donor batch is this one
        k = torch.arange(rows) - start_m[mine]  # the row's place within its structure
        take = start_t[src] + k % count_t[src].clamp(min=1)
        if kind == "node" and self.numbers is not None:
            take = _same_element(take, src, theirs, self.numbers[b], self.numbers[(b + 1) % len(self.batches)])
        out = donor[take].clone()  # rows of the donor batch
        R = random_rotations(n_mine, self.seed * 100_003 + b)
        for blk in chosen:
            if blk.l == 0:
                continue
            D = o3.Irrep(blk.l, blk.parity).D_from_matrix(R).to(out.dtype)  # [structures, 2l+1, 2l+1]
            v = out[:, blk.index].reshape(rows, blk.mul, blk.dim)
            out[:, blk.index] = torch.einsum("rij,rcj->rci", D[mine], v).reshape(rows, -1)
        return out


class _AtBatch:
    """A :class:`Baselines` bound to one batch: what an edit hook asks of it."""

    def __init__(self, baselines: Baselines, k: int):
        self.baselines, self.k = baselines, k

    def mean(self, p) -> torch.Tensor:
        return self.baselines.means[p.name]

    def donor(self, p, chosen, rows: int) -> torch.Tensor:
        return self.baselines.donor(self.k, p, chosen, rows)


def _same_element(take, src, theirs, z_mine, z_theirs) -> torch.Tensor:
    """Donor rows of the recipient's element: atom ``k`` of element Z takes the (k mod count)-th atom of
    element Z in its donor structure, else in the donor batch; an element the donor batch lacks keeps the
    structure-cycled donor (``take``)."""
    out = take.clone()
    for z in torch.unique(z_mine).tolist():
        rows = torch.nonzero(z_mine == z).flatten()
        pool = torch.nonzero(z_theirs == z).flatten()
        if len(pool) == 0:
            continue
        for s in torch.unique(src[rows]).tolist():
            mine = rows[src[rows] == s]
            own = pool[theirs[pool] == s]
            cands = own if len(own) else pool
            out[mine] = cands[torch.arange(len(mine)) % len(cands)]
    return out


def paired_bootstrap(per_base: np.ndarray, per_ablated: np.ndarray, denominator, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(ablated) - mean(base)) / denominator(rows)`` with a percentile interval from resampling
    structures (both sides together). ``denominator(rows)`` gives the scale on a resample."""
    rng = np.random.default_rng(seed)
    n = len(per_base)
    point = (per_ablated.mean() - per_base.mean()) / denominator(np.arange(n))
    draws = np.empty(n_boot)
    for i in range(n_boot):
        rows = rng.integers(0, n, n)
        draws[i] = (per_ablated[rows].mean() - per_base[rows].mean()) / denominator(rows)
    lo, hi = np.percentile(draws, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(point), float(lo), float(hi)
