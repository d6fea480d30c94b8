"""Named starting configurations. ``--set`` overrides any field afterwards."""
from __future__ import annotations

from ..config import Config
from ..errors import IrrepprobeError

PRESETS: dict[str, dict] = {
    # A few hundred molecules, one small layer: trains in seconds, for tests and first contact.
    "smoke": {
        "data": {"target": "u0_atom", "subset": 300, "split": [0.8, 0.1, 0.1]},
        "model": {"ls": [0, 1], "mul": 8, "layers": 2, "cutoff": 4.0, "n_basis": 6, "radial_hidden": 16,
                  "readout_hidden": 8},
        "train": {"epochs": 3, "batch_size": 32, "lr": 3e-3, "early_stop": 0},
    },
    # Lee, Galkin, Miret (arXiv 2410.08131): simple NequIP-like convolution, same multiplicity for
    # every order, Bessel basis of 20 functions and a 6 A cutoff, AdamW lr 1e-3, batch 32, 80/10/10.
    "lee": {
        "data": {"target": "u0_atom", "split": [0.8, 0.1, 0.1]},
        "model": {"ls": [0, 1, 2], "mul": 16, "layers": 3, "cutoff": 6.0, "n_basis": 20, "radial_hidden": 64},
        "train": {"batch_size": 32, "lr": 1e-3, "weight_decay": 1e-2},
    },
    # Miller, Geiger, Smidt, Noe (arXiv 2008.08461): gated convolutions, cutoff 5 A. L1Net carries
    # scalars and vectors; L0Net only scalars (distance-only convolutions), its width chosen so that the
    # parameter counts nearly match (tests/test_models.py checks within 5%).
    "miller-l1": {
        "data": {"target": "mu", "split": [0.8, 0.1, 0.1]},
        "model": {"ls": [0, 1], "mul": {0: 32, 1: 16}, "layers": 3, "cutoff": 5.0, "n_basis": 10,
                  "radial_hidden": 32},
        "train": {"batch_size": 32, "lr": 1e-3},
    },
    "miller-l0": {
        "data": {"target": "mu", "split": [0.8, 0.1, 0.1]},
        "model": {"ls": [0], "mul": 52, "layers": 3, "cutoff": 5.0, "n_basis": 10, "radial_hidden": 32},
        "train": {"batch_size": 32, "lr": 1e-3},
    },
}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise IrrepprobeError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return Config.from_dict(PRESETS[name])
