"""Interventions as data: where (:class:`Point`), what and how (:class:`Edit`), applied by the one hook
mechanism (:func:`hooked`) for a single pass or attached to a model for fine-tuning."""
from .hooks import hooked, keeping, replacing
from .points import KINDS, Point, as_points, at, leading

__all__ = ["KINDS", "Point", "as_points", "at", "leading", "hooked", "keeping", "replacing"]
