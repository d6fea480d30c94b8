"""The masked model: an order held at zero at every point but the output, spherical harmonics included,
as :class:`~irrepprobe.intervene.Edit` objects: applied for one pass (:func:`mask_hooks`) or attached to a
copy that is fine-tuned with the mask on (:func:`masked`). Every family's surgery is tested equal to it."""
from __future__ import annotations

import copy
from dataclasses import replace

from ..adapters import Loaded
from ..intervene import Edit, attach, edit_hooks, order_edits


def mask_edits(model: Loaded, drop) -> list[Edit]:
    """The edits of a masked model: the orders ``drop`` multiplied by zero at every point of
    :meth:`~irrepprobe.adapters.Adapter.mask_points`, spherical harmonics among them."""
    return order_edits(model.adapter.mask_points(model), drop, "mask")


def mask_hooks(model: Loaded, drop) -> list:
    """Hooks for one pass of the masked model (:func:`mask_edits` through the one hook mechanism)."""
    return edit_hooks(model.adapter.mask_points(model), mask_edits(model, drop))


def masked(model: Loaded, drop) -> Loaded:
    """A copy of ``model`` with the orders ``drop`` zeroed at every point but the output, spherical
    harmonics included, by :func:`mask_edits` attached to the copy: it trains with the mask on."""
    module = copy.deepcopy(model.module)
    new = replace(model, module=module, info={**model.info, "masked": sorted(int(l) for l in drop)})
    attach(module, new.adapter.mask_points(new), mask_edits(new, drop))
    return new
