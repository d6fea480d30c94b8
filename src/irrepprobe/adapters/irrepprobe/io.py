"""irrepprobe's own checkpoint files, read through :mod:`irrepprobe.train.checkpoint` (weights-only: safe on
any file, and only our format passes)."""
from __future__ import annotations

from pathlib import Path

from ...errors import IrrepprobeError
from ...fileio import check_file, kind_of


def is_checkpoint(source) -> bool:
    """Whether ``source`` is a file holding one of our checkpoints."""
    path = Path(source)
    if not path.is_file() or kind_of(path) != "torch-zip":
        return False
    try:  # weights-only: safe on any file, and only our format passes
        from ...train.checkpoint import load_checkpoint

        load_checkpoint(path)
        return True
    except IrrepprobeError:
        return False


def read_checkpoint(source):
    """``(network, checkpoint, checked path)`` of the checkpoint file ``source``; the network on the CPU."""
    from ...train.checkpoint import load_checkpoint, model_from_checkpoint

    path = check_file(source)
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt), ckpt, path
