"""sevenn at run time: the import guard (:func:`_sevenn`) and sevenn's model builder (:func:`build`)."""
from __future__ import annotations

import warnings

import torch

from ...errors import IrrepprobeError

_NEEDS_SEVENN = "loading SevenNet models needs the sevenn package: pip install sevenn"


def _sevenn():
    try:
        import sevenn  # noqa: F401
        import sevenn.util
    except ImportError:
        raise IrrepprobeError(_NEEDS_SEVENN) from None
    return sevenn


def build(config: dict, seed: int | None = None):
    """The model sevenn's builder (``build_E3_equivariant_model``) makes from ``config``, with its warnings
    silenced and the global RNG state restored afterwards; weights drawn under ``torch.manual_seed(seed)``,
    or from the current RNG state when ``seed`` is None."""
    from sevenn.model_build import build_E3_equivariant_model

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if seed is not None:
            torch.manual_seed(seed)
        return build_E3_equivariant_model(config)
