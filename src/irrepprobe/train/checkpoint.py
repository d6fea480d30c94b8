"""Checkpoints: plain tensors, numbers and strings only, so they load with ``weights_only=True``;
written atomically, checked for our format on load."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..errors import IrrepprobeError
from ..fileio import describe, kind_of, save_torch
from ..runtime import versions

FORMAT = "irrepprobe.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, **content: Any) -> Path:
    return save_torch({"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(), **content}, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; any problem is one :class:`IrrepprobeError` line."""
    path = Path(path)
    if not path.exists():
        raise IrrepprobeError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise IrrepprobeError(f"{path} is a directory; give the checkpoint file (e.g. {path}/best.pt)")
    kind = kind_of(path)
    if kind not in ("torch-zip", "pickle"):
        raise IrrepprobeError(f"{path} is not an irrepprobe checkpoint ({describe(kind)})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise IrrepprobeError(
            f"refusing to load {path}: it holds pickled Python objects that could run code "
            "(only weights-only irrepprobe checkpoints are loaded)"
        ) from None
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"{path} is a damaged or truncated PyTorch file ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise IrrepprobeError(f"{path} is not an irrepprobe checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise IrrepprobeError(f"{path} was written by a newer irrepprobe (format {ckpt['format_version']})")
    for key in ("config", "model", "split"):
        if key not in ckpt:
            raise IrrepprobeError(f"{path} is an incomplete irrepprobe checkpoint (no {key!r})")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any] | str | os.PathLike, map_location="cpu"):
    """Rebuild the trained model (eval mode) from a checkpoint dict or path."""
    from ..models import build_model

    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt, map_location)
    model = build_model(Config.from_dict(ckpt["config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise IrrepprobeError(f"checkpoint weights do not fit its config: {str(e).splitlines()[0]}") from None
    return model.eval()


def untrained_like(ckpt: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The checkpoint's model before training: same config and (``seed`` None) the same seed, hence the
    same initial weights that training started from; another ``seed`` gives another initialisation.
    The fitted output ``scale`` and ``atom_ref`` are kept so that outputs stay in target units. The
    control for every probe score."""
    from ..models import build_model

    config = Config.from_dict(ckpt["config"])
    torch.manual_seed(config.train.seed if seed is None else seed)
    state = build_model(config).state_dict()
    for key in ("scale", "atom_ref"):
        state[key] = ckpt["model"][key].clone()
    return {"config": ckpt["config"], "model": state, "split": ckpt["split"], "epoch": -1,
            "history": [], "untrained": True}
