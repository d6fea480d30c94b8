"""Slicing a layer's output into blocks, one per irrep (l, parity) with all its channels.

Blocks are sliced in e3nn's default ``mul_ir`` layout: each (mul, ir) run is ``mul`` consecutive
copies of the ``2l+1`` components. Other layouts are converted to it first, explicitly
(:func:`to_mul_ir`, and back with :func:`from_mul_ir` for ablation):

* ``ir_mul`` (cuequivariance): each run is ``2l+1`` components, each holding ``mul`` channels;
* ``mul_first`` (MACE messages): ``[rows, mul, D]``, every channel carrying all irreps of one copy
  (``D`` = the dimension of ``irreps`` with multiplicities divided out; every run has the same mul).

Slicing any of them as ``mul_ir`` would silently mix channels, so :func:`blocks` reads only ``mul_ir``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3

from ..errors import IrrepprobeError

LAYOUTS = ("mul_ir", "ir_mul", "mul_first")


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
    if layout != "mul_ir":
        raise IrrepprobeError(f"blocks are sliced from the mul_ir layout only; convert {layout!r} features "
                              "with to_mul_ir first")
    irreps = o3.Irreps(irreps)
    cols: dict[o3.Irrep, list[torch.Tensor]] = {}
    for s, (mul, ir) in zip(irreps.slices(), irreps):
        if mul > 0:
            cols.setdefault(ir, []).append(torch.arange(s.start, s.stop))
    return [Block(str(ir), ir.l, ir.p, sum(len(c) for c in cs) // ir.dim, torch.cat(cs)) for ir, cs in cols.items()]


def split(x: torch.Tensor, irreps, layout: str = "mul_ir", parts: list[Block] | None = None
          ) -> dict[str, torch.Tensor]:
    """[N, irreps.dim] features in ``layout`` -> {block name: [N, mul, 2l+1]}. ``parts``:
    ``blocks(irreps)`` computed once by a caller that splits many tensors of the same irreps."""
    irreps = o3.Irreps(irreps)
    x = to_mul_ir(x, irreps, layout)
    parts = blocks(irreps) if parts is None else parts
    return {b.name: x[..., b.index.to(x.device)].reshape(*x.shape[:-1], b.mul, b.dim) for b in parts}


def _check(x: torch.Tensor, irreps: o3.Irreps, layout: str) -> None:
    if layout not in LAYOUTS:
        raise IrrepprobeError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "mul_first":
        muls = {mul for mul, _ in irreps}
        if len(muls) != 1:
            raise IrrepprobeError(f"the mul_first layout needs one multiplicity for every irrep, got {irreps}")
        mul = muls.pop()
        width = irreps.dim // mul
        if x.dim() != 3 or x.shape[1:] != (mul, width):
            raise IrrepprobeError(f"a mul_first tensor of {irreps} must be [rows, {mul}, {width}], got "
                                  f"{list(x.shape)}")
    elif x.shape[-1] != irreps.dim:
        raise IrrepprobeError(f"feature width {x.shape[-1]} does not match irreps {irreps} (dim {irreps.dim})")


def to_mul_ir(x: torch.Tensor, irreps, layout: str) -> torch.Tensor:
    """[rows, ...] features in ``layout`` -> [rows, irreps.dim] in ``mul_ir``."""
    irreps = o3.Irreps(irreps)
    _check(x, irreps, layout)
    if layout == "mul_ir":
        return x
    rows, parts = x.shape[0], []
    if layout == "ir_mul":
        for s, (mul, ir) in zip(irreps.slices(), irreps):
            parts.append(x[:, s].reshape(rows, ir.dim, mul).transpose(1, 2).reshape(rows, mul * ir.dim))
    else:
        start = 0
        for mul, ir in irreps:
            parts.append(x[:, :, start:start + ir.dim].reshape(rows, mul * ir.dim))
            start += ir.dim
    return torch.cat(parts, dim=1) if parts else x.reshape(rows, 0)


def from_mul_ir(x: torch.Tensor, irreps, layout: str) -> torch.Tensor:
    """The inverse of :func:`to_mul_ir`: [rows, irreps.dim] in ``mul_ir`` -> ``layout``."""
    irreps = o3.Irreps(irreps)
    if layout == "mul_ir":
        return x
    rows, parts = x.shape[0], []
    for s, (mul, ir) in zip(irreps.slices(), irreps):
        run = x[:, s].reshape(rows, mul, ir.dim)
        parts.append(run.transpose(1, 2).reshape(rows, ir.dim * mul) if layout == "ir_mul" else run)
    if layout == "ir_mul":
        return torch.cat(parts, dim=1)
    if layout == "mul_first":
        return torch.cat(parts, dim=2)
    raise IrrepprobeError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
