"""Forward hooks that reduce every captured point's output block by block while the model runs.

Memory stays bounded: per channel only running sums (count, sum and sum of squares of the norm, min,
max) are kept, and per molecule only pooled features, never per-atom activations (those go to disk
shards with ``save_nodes``).
"""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from e3nn import o3

from ..errors import IrrepprobeError
from .layouts import blocks, split


def refuse_compiled(model: torch.nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise IrrepprobeError("cannot capture a TorchScript model (it takes no hooks): capture the eager module")
    if hasattr(model, "_orig_mod"):
        raise IrrepprobeError("cannot capture a torch.compile'd model (hooks added after compile are ignored): "
                              "capture the eager module, model._orig_mod")


def find_points(model: torch.nn.Module, layers: list[str] | None = None,
                irreps: dict[str, str] | None = None) -> dict[str, o3.Irreps]:
    """Capture points by dotted module name -> irreps of their output.

    Default: the outermost modules that expose ``irreps_out`` (for our networks ``embedding``,
    ``layers.0`` ... ``readout``). ``layers`` are glob patterns over ``named_modules()`` names ("*" for
    every irreps-carrying module); ``irreps`` gives irreps for modules that carry none.
    """
    refuse_compiled(model)
    irreps = dict(irreps or {})
    named = {n: m for n, m in model.named_modules() if n}
    carrying = [n for n, m in named.items() if hasattr(m, "irreps_out") or n in irreps]
    if layers is None:
        chosen = [n for n in carrying if not any(n.startswith(a + ".") for a in carrying)]
    else:
        chosen = []
        for pattern in layers:
            hits = [n for n in carrying if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                near = ", ".join(carrying[:12]) + (" ..." if len(carrying) > 12 else "")
                raise IrrepprobeError(f"no irreps-carrying module matches {pattern!r}; modules: {near}")
            chosen += [n for n in hits if n not in chosen]
    unknown = set(irreps) - set(named)
    if unknown:
        raise IrrepprobeError(f"irreps given for {sorted(unknown)[0]!r}, which is not a module of the model")
    if not chosen:
        raise IrrepprobeError("the model has no module with irreps_out: name modules and give their irreps")
    return {n: o3.Irreps(irreps.get(n) or named[n].irreps_out) for n in chosen}


@contextmanager
def hooked(model: torch.nn.Module, hooks: dict[str, Callable]) -> Iterator[None]:
    """Forward hooks by dotted module name for the duration of a ``with`` block. The one hook
    mechanism of irrepprobe: recording, ablation and attribution all go through it."""
    modules = dict(model.named_modules())
    missing = [n for n in hooks if n not in modules]
    if missing:
        raise IrrepprobeError(f"the model has no module {missing[0]!r}")
    handles = [modules[n].register_forward_hook(fn) for n, fn in hooks.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def zeroing(points: dict[str, o3.Irreps], zero: dict[str, list[str]]) -> dict[str, Callable]:
    """Hooks that set the named blocks of each point's output to zero, so that every later module
    sees them zeroed (for l > 0 zero is also the rotation average: zero- is mean-ablation)."""
    def make(point, names):
        parts = {b.name: b for b in blocks(points[point])}
        unknown = [n for n in names if n not in parts]
        if unknown:
            raise IrrepprobeError(f"{point} has no block {unknown[0]!r}; its blocks: {', '.join(parts)}")
        cols = torch.cat([parts[n].index for n in names])

        def hook(module, args, out):
            mask = torch.ones(out.shape[-1], dtype=out.dtype, device=out.device)
            mask[cols.to(out.device)] = 0
            return out * mask
        return hook
    return {p: make(p, names) for p, names in zero.items() if names}


def keeping(points: dict[str, o3.Irreps], store: dict[str, torch.Tensor]) -> dict[str, Callable]:
    """Hooks that keep each point's output (still in the autograd graph) in ``store``."""
    def make(point):
        def hook(module, args, out):
            store[point] = out
        return hook
    return {p: make(p) for p in points}


class Recorder:
    """Context manager: hooks on the chosen points, reductions per block. Call :meth:`begin` with the
    atom -> molecule index before each forward pass."""

    def __init__(self, model, points: dict[str, o3.Irreps], nodes_dir: str | Path | None = None,
                 shard_atoms: int = 200_000, n_molecules: int | None = None):
        self.model, self.points = model, points
        self.blocks = {p: blocks(ir) for p, ir in points.items()}
        self.nodes_dir = Path(nodes_dir) if nodes_dir else None
        self.shard_atoms = shard_atoms
        self.channel = {p: {b.name: None for b in bl} for p, bl in self.blocks.items()}
        # (point, block, kind) -> per-molecule array: preallocated when the molecule count is known
        # (no growing lists, no concatenation copy at the end), else a list of per-batch chunks
        self.molecule = {} if n_molecules else defaultdict(list)
        self.n_molecules, self._offset, self._n_mol = n_molecules, 0, 0
        self.skipped: dict[str, str] = {}
        self._node_buf, self._node_atoms, self._shards = defaultdict(list), 0, 0
        self._batch = None

    def __enter__(self):
        self._ctx = hooked(self.model, {name: self._hook(name) for name in self.points})
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        if exc[0] is None:
            self._flush_nodes()
        return False

    def begin(self, batch: torch.Tensor, num_molecules: int | None = None) -> None:
        self._offset += self._n_mol
        self._batch = batch
        self._n_mol = int(batch.max()) + 1 if num_molecules is None else num_molecules
        self._counts = torch.bincount(batch, minlength=self._n_mol).clamp(min=1)

    def _hook(self, name):
        def hook(module, args, out):
            if self._batch is None:
                raise RuntimeError("Recorder.begin(batch) must be called before each forward pass")
            if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != self._batch.numel():
                self.skipped[name] = "output is not one row per atom"
                return
            with torch.no_grad():
                self._reduce(name, out.detach())
        return hook

    def _reduce(self, point: str, x: torch.Tensor) -> None:
        b, n_mol = self._batch, self._n_mol
        for name, v in split(x, self.points[point], parts=self.blocks[point]).items():  # [atoms, mul, 2l+1]
            v = v.double()
            norm = v.norm(dim=-1)
            stats = torch.stack([norm.sum(0), norm.pow(2).sum(0)])
            lo, hi = norm.min(0).values, norm.max(0).values
            acc = self.channel[point][name]
            if acc is None:
                self.channel[point][name] = acc = {"count": 0, "sums": torch.zeros_like(stats).cpu(),
                                                   "min": lo.cpu(), "max": hi.cpu()}
            acc["count"] += norm.shape[0]
            acc["sums"] += stats.cpu()
            acc["min"] = torch.minimum(acc["min"], lo.cpu())
            acc["max"] = torch.maximum(acc["max"], hi.cpu())

            pooled = norm.new_zeros(n_mol, norm.shape[1]).index_add_(0, b, norm)
            self._keep(point, name, "norm_sum", pooled)
            self._keep(point, name, "norm_mean", pooled / self._counts[:, None])
            if v.shape[-1] == 1:
                values = v[..., 0].new_zeros(n_mol, v.shape[1]).index_add_(0, b, v[..., 0])
                self._keep(point, name, "value_sum", values)
                self._keep(point, name, "value_mean", values / self._counts[:, None])
            else:
                self._keep(point, name, "vector_sum", v.new_zeros(n_mol, *v.shape[1:]).index_add_(0, b, v))
        if self.nodes_dir is not None:
            self._node_buf[point].append(x.float().cpu())
            if point == next(iter(self.points)):
                self._node_buf["__batch__"].append(b.cpu())
                self._node_atoms += b.numel()
            if point == list(self.points)[-1] and self._node_atoms >= self.shard_atoms:
                self._flush_nodes()

    def _keep(self, point, block, kind, value):
        if not self.n_molecules:
            self.molecule[(point, block, kind)].append(value.float().cpu())
            return
        key = (point, block, kind)
        if key not in self.molecule:
            self.molecule[key] = torch.zeros(self.n_molecules, *value.shape[1:])
        if self._offset + len(value) > self.n_molecules:
            raise RuntimeError(f"more molecules than the {self.n_molecules} announced to the Recorder")
        self.molecule[key][self._offset : self._offset + len(value)] = value.float().cpu()

    def _flush_nodes(self) -> None:
        if self.nodes_dir is None or not self._node_buf:
            return
        from ..fileio import save_npz

        arrays = {k: torch.cat(v).numpy() for k, v in self._node_buf.items()}
        save_npz(arrays, self.nodes_dir / f"shard-{self._shards:05d}.npz")
        self._shards += 1
        self._node_buf.clear()
        self._node_atoms = 0

    def channel_stats(self) -> dict[tuple[str, str], dict[str, np.ndarray]]:
        """Per (point, block): count and per-channel mean, variance, min and max of the norm."""
        out = {}
        for point, per_block in self.channel.items():
            if point in self.skipped:
                continue
            for name, acc in per_block.items():
                if acc is None:
                    continue
                mean, mean_sq = acc["sums"] / acc["count"]
                out[(point, name)] = {"count": acc["count"], "mean": mean.numpy(), "mean_sq": mean_sq.numpy(),
                                      "var": (mean_sq - mean**2).clamp(min=0).numpy(),
                                      "min": acc["min"].numpy(), "max": acc["max"].numpy()}
        return out

    def molecule_arrays(self) -> dict[tuple[str, str, str], np.ndarray]:
        done = self._offset + self._n_mol
        return {k: (v[:done] if torch.is_tensor(v) else torch.cat(v)).numpy()
                for k, v in self.molecule.items() if k[0] not in self.skipped}
