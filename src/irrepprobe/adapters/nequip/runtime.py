"""nequip at run time: the import guard (:func:`_nequip`), nequip's global state without its side effects
(:func:`_nequip_state`), and nequip's model builder under that guard (:func:`build`)."""
from __future__ import annotations

import copy
import random
import warnings
from contextlib import contextmanager

import numpy as np
import torch

from ...errors import IrrepprobeError

_NEEDS = "loading NequIP or Allegro models needs the nequip package (and nequip-allegro for Allegro): " \
         "pip install nequip nequip-allegro"


def _nequip():
    try:
        import nequip  # noqa: F401
        from nequip.model.saved_models.load_utils import load_saved_model  # noqa: F401
    except ImportError:
        raise IrrepprobeError(_NEEDS) from None


@contextmanager
def _nequip_state():
    """nequip's global state for building models and data, without its side effects on the caller.

    nequip wants ``set_global_state()`` before anything is built: it seeds every RNG (lightning's
    ``seed_everything(123)``) and makes float64 the default dtype, which nequip's data pipeline and model
    builders assume; building a model also leaves e3nn's jit_mode at "script" (after which modules that
    e3nn builds, e.g. SevenNet's, can no longer be deep-copied). The RNG states are restored at once, the
    default dtype and e3nn's optimisation defaults when the block ends, so irrepprobe's own tensors, random
    draws and other families' models are the same with or without a nequip model loaded. (The forward
    pass itself runs under the caller's default dtype: nequip's modules give dtypes.)"""
    import e3nn
    from nequip.utils.global_dtype import _GLOBAL_DTYPE
    from nequip.utils.global_state import set_global_state

    dtype, py, npr = torch.get_default_dtype(), random.getstate(), np.random.get_state()
    e3nn_defaults = e3nn.get_optimization_defaults()
    with torch.random.fork_rng(devices=[]):
        set_global_state()
    random.setstate(py)
    np.random.set_state(npr)
    torch.set_default_dtype(_GLOBAL_DTYPE)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        e3nn.set_optimization_defaults(**e3nn_defaults)


def build(config: dict, what: str):
    """The model nequip's builder makes from ``config`` (its ``_target_`` and arguments), under the
    global-state guard; a failure is one line saying it could not ``what``."""
    from hydra.utils import get_method

    args = copy.deepcopy(config)
    try:
        with _nequip_state(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_method(args.pop("_target_"))(**args)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"nequip cannot {what} ({type(e).__name__}: {first[:200]})") from None
