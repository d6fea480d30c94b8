"""Which points a capture reads: any module tree's irreps-carrying modules (:func:`find_points`), an
adapter's points chosen by glob patterns (:func:`choose_points`), and the models that take no hooks."""
from __future__ import annotations

import fnmatch

import torch
from e3nn import o3

from ..adapters.base import Loaded
from ..errors import IrrepprobeError


def refuse_compiled(model: torch.nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise IrrepprobeError("cannot capture a TorchScript model (it takes no hooks): capture the eager module")
    if hasattr(model, "_orig_mod"):
        raise IrrepprobeError("cannot capture a torch.compile'd model (hooks added after compile are ignored): "
                              "capture the eager module, model._orig_mod")


def find_points(model: torch.nn.Module, layers: list[str] | None = None,
                irreps: dict[str, str] | None = None) -> dict[str, o3.Irreps]:
    """Capture points by dotted module name -> irreps of their output, for any module tree.

    Default: the outermost modules that expose ``irreps_out`` as e3nn irreps (modules whose
    ``irreps_out`` is something else, such as NequIP's dict of fields, are not irreps-carrying here).
    ``layers`` are glob patterns over ``named_modules()`` names ("*" for every irreps-carrying module);
    ``irreps`` gives irreps for modules that carry none.
    """
    refuse_compiled(model)
    irreps = dict(irreps or {})
    named = {n: m for n, m in model.named_modules() if n}
    unknown = set(irreps) - set(named)
    if unknown:
        raise IrrepprobeError(f"irreps given for {sorted(unknown)[0]!r}, which is not a module of the model")
    found = {n: _irreps_of(m) for n, m in named.items()}
    found = {n: o3.Irreps(irreps[n]) if n in irreps else ir for n, ir in found.items()
             if ir is not None or n in irreps}
    carrying = list(found)
    if layers is None:
        chosen = [n for n in carrying if not any(n.startswith(a + ".") for a in carrying)]
    else:
        chosen = select(carrying, layers, "irreps-carrying module")
    if not chosen:
        raise IrrepprobeError("the model has no module with irreps_out: name modules and give their irreps")
    return {n: found[n] for n in chosen}


def _irreps_of(module) -> o3.Irreps | None:
    ir = getattr(module, "irreps_out", None)
    if ir is None or isinstance(ir, dict):
        return None
    try:
        return o3.Irreps(ir)
    except (ValueError, TypeError, AssertionError):
        return None


def select(names: list[str], patterns: list[str], what: str = "point") -> list[str]:
    """``names`` matching any of the glob ``patterns``, in the order of ``names``; a pattern that
    matches nothing is an error that lists what there is."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            near = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise IrrepprobeError(f"no {what} matches {pattern!r}; there are: {near}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def choose_points(model: Loaded, patterns: list[str] | None):
    refuse_compiled(model.module)
    points = model.adapter.points(model)
    names = select([p.name for p in points], patterns) if patterns else model.adapter.default_points(model)
    by_name = {p.name: p for p in points}
    return [by_name[n] for n in names]
