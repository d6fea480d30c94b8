"""SO3LR files: the weights ``so3krates-torch`` ships (the name ``so3lr``) or any file of a pickled SO3LR
module; :func:`accepts` reads raw bytes only, nothing is unpickled without ``trust``.

The stored module leaves its long-range cutoff unset; the package's own calculator sets it (12 A, dispersion
damping 2 A) before every use, and so does :func:`load`: left unset, the model takes another Coulomb path
(H2O 0.40 eV off the calculator)."""
from __future__ import annotations

from pathlib import Path

from ...errors import IrrepprobeError
from ...fileio import pickle_bytes, torch_load

NAME = "so3lr"
MARKER = b"so3krates_torch.modules.models"
R_MAX_LR, DAMPING = 12.0, 2.0  # so3krates_torch.calculator.so3.SO3LRCalculator's defaults


def _package():
    try:
        import so3krates_torch
    except ImportError:
        raise IrrepprobeError("SO3LR models need the so3krates-torch package: pip install 'irrepprobe[so3lr]'") from None
    return so3krates_torch


def shipped() -> Path:
    """The pretrained SO3LR v1 file inside the installed package."""
    return Path(_package().__file__).parent / "pretrained" / "so3lr" / "so3lr.model"


def accepts(source: str) -> bool:
    if str(source).lower() == NAME:
        return True
    head = pickle_bytes(source, 1 << 16) if Path(source).is_file() else None
    return bool(head) and MARKER in head


def load(source: str, trust: bool):
    """(module in eval mode, the path it came from)."""
    _package()
    path = shipped() if str(source).lower() == NAME else Path(source)
    module = torch_load(path, trust, "an SO3LR file")
    if type(module).__name__ not in ("SO3LR", "So3krates"):
        raise IrrepprobeError(f"{path} holds a {type(module).__name__}, not an SO3LR or So3krates model")
    if getattr(module, "use_lr", False) and getattr(module, "r_max_lr", None) is None:
        module.r_max_lr = R_MAX_LR
    if getattr(module, "dispersion_energy_cutoff_lr_damping", 0) is None:
        module.dispersion_energy_cutoff_lr_damping = DAMPING
    return module.float().eval(), path
