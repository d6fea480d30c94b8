"""Slicing a layer's output into blocks, one per irrep (l, parity) with all its channels.

Only e3nn's default ``mul_ir`` layout is read: each (mul, ir) run is ``mul`` consecutive copies of the
``2l+1`` components. The ``ir_mul`` layout (cuequivariance) interleaves them differently; slicing it as
``mul_ir`` would silently mix channels, so it is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3

from ..errors import IrrepprobeError

LAYOUTS = ("mul_ir",)


@dataclass(frozen=True)
class Block:
    name: str  # "0e", "1o", ...
    l: int
    parity: int  # +1 even, -1 odd
    mul: int
    index: torch.Tensor  # [mul * (2l+1)] feature columns, channel-major

    @property
    def dim(self) -> int:
        return 2 * self.l + 1


def blocks(irreps, layout: str = "mul_ir") -> list[Block]:
    """One block per distinct irrep, in order of first appearance; repeated runs are merged."""
    if layout not in LAYOUTS:
        raise IrrepprobeError(f"cannot read the {layout!r} layout; only {', '.join(LAYOUTS)} is supported "
                              "(convert ir_mul features to mul_ir first)")
    irreps = o3.Irreps(irreps)
    cols: dict[o3.Irrep, list[torch.Tensor]] = {}
    for s, (mul, ir) in zip(irreps.slices(), irreps):
        if mul > 0:
            cols.setdefault(ir, []).append(torch.arange(s.start, s.stop))
    return [Block(str(ir), ir.l, ir.p, sum(len(c) for c in cs) // ir.dim, torch.cat(cs)) for ir, cs in cols.items()]


def split(x: torch.Tensor, irreps, layout: str = "mul_ir", parts: list[Block] | None = None
          ) -> dict[str, torch.Tensor]:
    """[N, irreps.dim] -> {block name: [N, mul, 2l+1]}. ``parts``: ``blocks(irreps)`` computed once
    by a caller that splits many tensors of the same irreps."""
    irreps = o3.Irreps(irreps)
    if x.shape[-1] != irreps.dim:
        raise IrrepprobeError(f"feature width {x.shape[-1]} does not match irreps {irreps} (dim {irreps.dim})")
    parts = blocks(irreps, layout) if parts is None else parts
    return {b.name: x[..., b.index.to(x.device)].reshape(*x.shape[:-1], b.mul, b.dim) for b in parts}
