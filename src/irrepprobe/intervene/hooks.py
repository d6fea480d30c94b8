"""The one hook mechanism: forward hooks for the duration of a ``with`` block. Recording, ablation,
masking and attribution all go through :func:`hooked`; :func:`replacing` rewrites a point's tensor,
:func:`keeping` keeps it."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from ..errors import IrrepprobeError
from ..irreps import from_mul_ir, to_mul_ir
from .points import Point, as_points


@contextmanager
def hooked(model: torch.nn.Module, hooks) -> Iterator[None]:
    """Forward hooks for the duration of a ``with`` block: ``{module name: fn}`` or a list of
    ``(module name, fn)`` pairs (several on one module run in order). The one hook mechanism of
    irrepprobe: recording, ablation and attribution all go through it."""
    modules = dict(model.named_modules())
    pairs = list(hooks.items()) if isinstance(hooks, dict) else list(hooks)
    missing = [n for n, _ in pairs if n not in modules]
    if missing:
        raise IrrepprobeError(f"the model has no module {missing[0]!r}")
    handles = [modules[n].register_forward_hook(fn) for n, fn in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def replacing(points, replace: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> list[tuple[str, Callable]]:
    """Hooks that pass each named point's tensor, in ``mul_ir`` layout, through ``replace[name]`` and
    write the result back into the module's output, so that every later module sees it."""
    by_name = {p.name: p for p in as_points(points)}

    def make(p: Point, fn):
        def hook(module, args, out):
            x = p.read(out)
            new = from_mul_ir(fn(to_mul_ir(x, p.irreps, p.layout)), p.irreps, p.layout)
            return p.write(out, new)
        return hook
    return [(by_name[n].module, make(by_name[n], fn)) for n, fn in replace.items()]


def keeping(points, store: dict[str, torch.Tensor], grad: bool = False) -> list[tuple[str, Callable]]:
    """Hooks that keep each point's tensor (in the point's own layout, still in the autograd graph) in
    ``store``. The kept tensor is written back, so that what runs downstream is computed from it: a point
    whose read makes a new tensor (a slice of the module's output) would otherwise get no gradient.
    ``grad``: a tensor outside the autograd graph becomes a leaf that requires one (attribution)."""
    def make(p: Point):
        def hook(module, args, out):
            x = p.read(out)
            if grad and torch.is_tensor(x) and not x.requires_grad and x.is_floating_point():
                x = x.detach().requires_grad_(True)  # nothing upstream needs a gradient (no forces asked)
            store[p.name] = x
            return p.write(out, x)
        return hook
    return [(p.module, make(p)) for p in as_points(points)]
