"""Forward hooks that reduce every captured point's output block by block while the model runs.

Memory stays bounded: per channel only running sums (count, sum and sum of squares of the norm, min,
max) are kept, and per molecule only pooled features, never per-atom activations (those go to disk
shards with ``save_nodes``).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..intervene import Point, as_points, hooked
from ..irreps import blocks, split, to_mul_ir


class Recorder:
    """Context manager: hooks on the chosen points, reductions per block. Call :meth:`begin` with each
    :class:`~irrepprobe.adapters.Batch` before its forward pass.

    A node point's rows are pooled per structure over atoms, an edge point's over edges. A point's
    kind is declared by its adapter, never guessed from a row count (a batch can have as many edges as
    atoms); a tensor whose rows match neither is skipped with the reason."""

    def __init__(self, model, points, nodes_dir: str | Path | None = None,
                 shard_atoms: int = 200_000, n_molecules: int | None = None):
        self.model = model
        self.point_list = as_points(points)
        self.points = {p.name: p.irreps for p in self.point_list}
        self.blocks = {p.name: blocks(p.irreps) for p in self.point_list}
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
        self._ctx = hooked(self.model, [(p.module, self._hook(p)) for p in self.point_list])
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        if exc[0] is None:
            self._flush_nodes()
        return False

    def begin(self, batch, num_molecules: int | None = None) -> None:
        """Before each forward pass: a :class:`~irrepprobe.adapters.Batch`, or (plain modules) the
        [atoms] atom -> structure index."""
        if self.nodes_dir is not None and self._node_atoms >= self.shard_atoms:
            self._flush_nodes()  # between batches, so every point's rows of a batch land in one shard
        self._offset += self._n_mol
        if torch.is_tensor(batch):
            n = int(batch.max()) + 1 if num_molecules is None else num_molecules
            self._index = {"node": batch, "edge": None}
        else:
            n = batch.n_structures
            self._index = {"node": batch.atom_batch, "edge": batch.edge_batch}
        self._batch, self._n_mol = batch, n
        self._counts = {k: (torch.bincount(v, minlength=n).clamp(min=1) if v is not None else None)
                        for k, v in self._index.items()}
        if self.nodes_dir is not None:
            self._node_buf["__batch__"].append(self._index["node"].cpu())
            self._node_atoms += self._index["node"].numel()

    def _hook(self, p: Point):
        def hook(module, args, out):
            if self._batch is None:
                raise RuntimeError("Recorder.begin(batch) must be called before each forward pass")
            if p.name in self.skipped:
                return
            try:
                x = p.read(out)
            except (KeyError, IndexError, TypeError, AttributeError) as e:
                self.skipped[p.name] = f"cannot read the tensor from the module output ({type(e).__name__}: {e})"
                return
            index = self._index[p.kind]
            if not torch.is_tensor(x):
                self.skipped[p.name] = "the module output holds no tensor at this point"
            elif index is None:
                self.skipped[p.name] = f"an {p.kind} point, but the adapter gives no {p.kind} index"
            elif x.shape[0] != index.numel():
                self.skipped[p.name] = (f"{x.shape[0]} rows, but the batch has {index.numel()} {p.kind}s "
                                        f"(declared a {p.kind} point)")
            else:
                with torch.no_grad():
                    self._reduce(p, to_mul_ir(x.detach(), p.irreps, p.layout), index, self._counts[p.kind])
        return hook

    def _reduce(self, p: Point, x: torch.Tensor, b: torch.Tensor, counts: torch.Tensor) -> None:
        point, n_mol = p.name, self._n_mol
        for name, v in split(x, p.irreps, parts=self.blocks[point]).items():  # [rows, mul, 2l+1]
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
            self._keep(point, name, "norm_mean", pooled / counts[:, None])
            if v.shape[-1] == 1:
                values = v[..., 0].new_zeros(n_mol, v.shape[1]).index_add_(0, b, v[..., 0])
                self._keep(point, name, "value_sum", values)
                self._keep(point, name, "value_mean", values / counts[:, None])
            else:
                self._keep(point, name, "vector_sum", v.new_zeros(n_mol, *v.shape[1:]).index_add_(0, b, v))
        if self.nodes_dir is not None and p.kind == "node":
            self._node_buf[point].append(x.float().cpu())

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

        arrays = {k: torch.cat(v).numpy() for k, v in self._node_buf.items() if k not in self.skipped}
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
