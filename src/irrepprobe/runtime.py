"""What every room may ask of the machine it runs on: the device, the package versions, whether a pass
needs gradients. Imports nothing of irrepprobe but its error type, so that capturing a model never
depends on our trainer."""
from __future__ import annotations

import os
import platform
from importlib import metadata

import torch

from .errors import IrrepprobeError


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise IrrepprobeError("--device cuda was asked for but no CUDA GPU is available")
        if name == "cuda":
            name = f"cuda:{world()[1]}"
    return torch.device(name)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("irrepprobe", "torch", "e3nn", "torch_geometric"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def grad_context(needs_grad: bool):
    """Gradients on for a pass of a family that needs them even for its energy (forces by autograd
    inside its forward), off otherwise."""
    return torch.enable_grad() if needs_grad else torch.no_grad()
