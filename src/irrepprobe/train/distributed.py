"""torchrun support: DistributedDataParallel with gloo on CPU and nccl on GPU."""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..runtime import resolve_device, world  # noqa: F401  (re-exported for our trainer)


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
