"""The masked model: an order held at zero at every point but the output, spherical harmonics included,
and, with ``keep``, the channels a pruned model lacks held at zero where they live, as
:class:`~irrepprobe.intervene.Edit` objects: applied for one pass (:func:`mask_hooks`) or attached to a
copy that is fine-tuned with the mask on (:func:`masked`). Every family's surgery is tested equal to it."""
from __future__ import annotations

import copy
from dataclasses import replace

from ..adapters import Loaded
from ..intervene import Edit, attach, edit_hooks, order_edits
from ..irreps import blocks


def channel_edits(points, keep: dict) -> list[Edit]:
    """Mask edits of the channels not in ``keep`` (point -> block -> the channels kept) at ``points``."""
    out = []
    for p in points:
        if p.name not in keep:
            continue
        parts = {b.name: b for b in blocks(p.irreps)}
        names, chans = [], []
        for name, kept in keep[p.name].items():
            if name in parts:
                gone = sorted(set(range(parts[name].mul)) - {int(u) for u in kept})
                if gone:
                    names.append(name)
                    chans.append(tuple(gone))
        if names:
            out.append(Edit(p.name, tuple(names), "mask", channels=tuple(chans)))
    return out


def mask_edits(model: Loaded, drop, keep: dict | None = None) -> list[Edit]:
    """The edits of a masked model: the orders ``drop`` multiplied by zero at every point of
    :meth:`~irrepprobe.adapters.Adapter.mask_points`, spherical harmonics among them; and the channels not
    in ``keep`` (point -> block -> channels kept) at their points."""
    points = model.adapter.mask_points(model)
    return order_edits(points, drop, "mask") + (channel_edits(points, keep) if keep else [])


def mask_hooks(model: Loaded, drop, keep: dict | None = None) -> list:
    """Hooks for one pass of the masked model (:func:`mask_edits` through the one hook mechanism)."""
    return edit_hooks(model.adapter.mask_points(model), mask_edits(model, drop, keep))


def masked(model: Loaded, drop, keep: dict | None = None) -> Loaded:
    """A copy of ``model`` with the orders ``drop`` (and the channels not in ``keep``) zeroed at every point
    but the output, spherical harmonics included, by :func:`mask_edits` attached to the copy: it trains
    with the mask on."""
    module = copy.deepcopy(model.module)
    new = replace(model, module=module, info={**model.info, "masked": sorted(int(l) for l in drop)})
    attach(module, new.adapter.mask_points(new), mask_edits(new, drop, keep))
    return new
