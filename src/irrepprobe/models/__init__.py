"""The equivariant network family and the presets of the two studies."""
from .layers import BesselBasis, Interaction, Readout
from .network import EquivariantNet, build_model, fit_output_stats, hidden_irreps, num_parameters
from .presets import PRESETS, preset

__all__ = ["BesselBasis", "EquivariantNet", "Interaction", "PRESETS", "Readout", "build_model",
           "fit_output_stats", "hidden_irreps", "num_parameters", "preset"]
