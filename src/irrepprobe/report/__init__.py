"""Figures and the markdown/HTML report, drawn from what :mod:`irrepprobe.metrics` computed and
:mod:`irrepprobe.study` measured (the capture report's pipeline, ``make_report``, lives there)."""
from .document import Document

__all__ = ["Document"]
