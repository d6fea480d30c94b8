"""The capture report's pipeline: every stage measured (the costly ones reused from the output
directory), the verdict decided, the tables saved, then :mod:`irrepprobe.report` draws and writes."""
from .pipeline import make_report

__all__ = ["make_report"]
