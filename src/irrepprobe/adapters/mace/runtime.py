"""mace at run time: the import guard (:func:`_mace`, without what ``import mace`` does to the process)
and a MACE model built by its own constructor (:func:`build`)."""
from __future__ import annotations

import os
import warnings

import torch

from ...errors import IrrepprobeError

_NEEDS_MACE = "loading MACE models needs the mace-torch package: pip install mace-torch"


def _mace():
    """Import mace without keeping what its import does to the process: ``import mace`` sets
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which would turn every later ``torch.load`` that does not
    name ``weights_only`` into a full unpickling. irrepprobe unpickles only with ``trust``."""
    saved = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    try:
        import mace  # noqa: F401
        import mace.data  # noqa: F401
        import mace.modules  # noqa: F401
    except ImportError:
        raise IrrepprobeError(_NEEDS_MACE) from None
    finally:
        if saved is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved


def build(cls, config: dict, dtype: torch.dtype, seed: int | None = None):
    """``cls(**config)`` in ``dtype``, weights drawn under ``torch.manual_seed(seed)`` with the global RNG
    state and default dtype restored: MACE's constructors read both."""
    saved = torch.get_default_dtype()
    try:  # e3nn 0.4 scripts its generated code while building, with TorchScript's warnings
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.set_default_dtype(dtype)
            torch.manual_seed(0 if seed is None else seed)
            module = cls(**config)
    finally:
        torch.set_default_dtype(saved)
    return module.to(dtype=dtype)
