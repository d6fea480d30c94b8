"""Where an intervention acts: a :class:`Point`, one module output that carries irreps, with how to read
its tensor out of whatever the module returns and write a changed one back; and the accessors families
use to build those two functions (an item of a tuple, a key of a dict)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from e3nn import o3

from ..errors import IrrepprobeError

KINDS = ("node", "edge")


def _identity_read(out):
    return out


def _identity_write(out, x):
    return x


@dataclass
class Point:
    """One capture point: the output of ``module`` (a dotted ``named_modules()`` name)."""

    name: str  # stable dotted name a user selects with a glob, e.g. "layers.2", "3_equivariant_gate"
    module: str  # the module whose forward output holds the tensor
    irreps: o3.Irreps
    kind: str = "node"  # "node": one row per atom; "edge": one row per edge
    layout: str = "mul_ir"  # "mul_ir", "ir_mul" or "mul_first" (see irreps.layouts)
    read: Callable[[Any], torch.Tensor] = _identity_read  # module output -> tensor
    write: Callable[[Any, torch.Tensor], Any] = _identity_write  # (module output, new tensor) -> output
    # "stream" (what leaves a layer), "update" (a layer's own contribution before its residual), "input"
    # (embeddings), "inner" (inside a layer), "output" (the per-atom output, not a hidden block)
    role: str = "stream"

    def __post_init__(self):
        self.irreps = o3.Irreps(self.irreps)
        if self.kind not in KINDS:
            raise IrrepprobeError(f"point {self.name}: kind must be node or edge, got {self.kind!r}")


def as_points(points) -> list[Point]:
    """Points from a list of :class:`Point` or a ``{module name: irreps}`` mapping (plain modules)."""
    if isinstance(points, dict):
        return [Point(n, n, ir) for n, ir in points.items()]
    return list(points)


def at(key, transpose: bool = False) -> dict:
    """``read`` and ``write`` of a :class:`Point` whose tensor is one entry of its module's output: a key of
    a dict (written back in place) or an index of a tuple (written into a new tuple). ``transpose``: the
    entry is ``[rows, D, mul]`` (cuequivariance's ``ir_mul`` messages), read as ``[rows, mul, D]``."""
    def read(out):
        x = out[key]
        return x.transpose(1, 2) if transpose else x

    def write(out, x):
        x = x.transpose(1, 2) if transpose else x
        if isinstance(out, tuple):
            out = list(out)
            out[key] = x
            return tuple(out)
        out[key] = x
        return out
    return {"read": read, "write": write}


def leading(n: int) -> dict:
    """``read`` and ``write`` of a :class:`Point` whose tensor is the first ``n`` columns of its module's
    output (the rest left as they are)."""
    def read(out):
        return out[:, :n]

    def write(out, x):
        return torch.cat([x.to(out.dtype), out[:, n:]], dim=1)
    return {"read": read, "write": write}
