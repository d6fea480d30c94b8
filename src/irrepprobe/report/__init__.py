"""Figures and the markdown/HTML report, drawn from what :mod:`irrepprobe.metrics` computed."""
from .build import make_report
from .document import Document

__all__ = ["Document", "make_report"]
