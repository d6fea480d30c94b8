"""``irrepprobe validate``: physics checks of potentials side by side, through each family's own ASE
calculator: the Delta test against WIEN2k (eos), stress against finite differences, NVE drift, stability
at high temperature, phonons, S22 and QM9 molecules, and MD speed."""
from .run import SUITES, parse_elements, parse_suites, validate

__all__ = ["SUITES", "parse_elements", "parse_suites", "validate"]
