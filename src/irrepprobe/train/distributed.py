"""torchrun support: DistributedDataParallel with gloo on CPU and nccl on GPU."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def setup(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; returns whether we are distributed."""
    if world()[2] <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    from ..errors import IrrepprobeError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise IrrepprobeError("--device cuda was asked for but no CUDA GPU is available")
        if name == "cuda":
            name = f"cuda:{world()[1]}"
    return torch.device(name)
