"""MACE files: what a path is (:func:`accepts`, :func:`looks_like_mace`, from raw bytes only), the MACE
module a ``.model`` file holds (:func:`load_model`), and a module written as such a file
(:func:`write_model`).

``.model`` files are the whole module pickled by ``mace_run_train``: nothing is unpickled without
``trust``; ``*_compiled.model`` (TorchScript) takes no hooks and is refused with what to give instead."""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import IrrepprobeError
from ...fileio import check_file, describe, kind_of, pickle_bytes, refuse_untrusted, save_torch, torch_load, zip_names
from .runtime import _mace

_MARKER = b"mace.modules.models"  # the module of MACE's model classes, as the pickle names it
_HEAD_BYTES = 1 << 20  # the top module's class comes first in the pickle


def _is_compiled_mace(path: Path) -> bool:
    """A TorchScript MACE (``*_compiled.model``): its archive holds the scripted code of mace's modules."""
    return any("__torch__/mace/" in n for n in zip_names(path))


def looks_like_mace(path) -> bool:
    """Whether ``path`` is a pickled MACE module, from the raw bytes of its pickle (no unpickling)."""
    raw = pickle_bytes(path, _HEAD_BYTES)
    return raw is not None and _MARKER in raw


def accepts(source: str) -> bool:
    """A pickled MACE module or a compiled MACE model on disk."""
    path = Path(str(source))
    if not path.is_file():
        return False
    kind = kind_of(path)
    if kind == "torchscript":
        return _is_compiled_mace(path)  # accepted so that load() can say what to give instead
    return kind in ("torch-zip", "pickle") and looks_like_mace(path)


def load_model(source: str, trust: bool):
    """(module, file): the MACE module pickled in the ``.model`` file ``source``."""
    path = check_file(Path(str(source)))
    kind = kind_of(path)
    if kind == "torchscript":
        eager = path.name.replace("_compiled.model", ".model") if path.name.endswith("_compiled.model") \
            else "the .model file"
        raise IrrepprobeError(f"{path} is a compiled (TorchScript) MACE model, which takes no hooks: give "
                              f"{eager}, the pickled module it was compiled from")
    if kind not in ("torch-zip", "pickle"):
        raise IrrepprobeError(f"{path} is not a PyTorch file ({describe(kind)})")
    refuse_untrusted(path, trust, "this MACE model file")  # before mace or anything else unpickles
    _mace()
    try:
        module = torch_load(path, trust, "this MACE model file")
    except ModuleNotFoundError as e:  # a cuequivariance model without cuequivariance installed
        raise IrrepprobeError(f"{path} needs the package {e.name!r} to load (a model converted to "
                              "cuequivariance: pip install cuequivariance-torch)") from None
    if isinstance(module, dict):
        raise IrrepprobeError(f"{path} holds a dict (a training checkpoint or a state dict), not a MACE "
                              "module: give the .model file mace_run_train writes")
    if not (isinstance(module, torch.nn.Module) and type(module).__module__.startswith("mace.")
            and hasattr(module, "interactions") and hasattr(module, "products")):
        raise IrrepprobeError(f"{path} is not a MACE model (it holds a {type(module).__name__})")
    return module, path


def write_model(module, path) -> Path:
    """``module`` as a MACE ``.model`` file (the whole module pickled, as ``mace_run_train`` writes it),
    which MACE's own ``MACECalculator`` loads; written atomically."""
    return save_torch(module, path)
