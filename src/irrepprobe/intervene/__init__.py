"""Interventions as data: where (:class:`Point`), what and how (:class:`Edit`), applied by the one hook
mechanism (:func:`hooked`) for a single pass or attached to a model for fine-tuning."""
from .edits import HOWS, Edit, attach, describe, edit_hooks, order_edits
from .hooks import hooked, keeping, replacing
from .points import KINDS, Point, as_points, at, leading

__all__ = ["Edit", "HOWS", "attach", "describe", "edit_hooks", "order_edits", "KINDS", "Point", "as_points", "at", "leading", "hooked", "keeping", "replacing"]
