"""Atomic writes: a killed run leaves the previous good file, never half of a new one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would surprise a user sharing results
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_text(text: str, path: str | os.PathLike) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def save_csv(df, path: str | os.PathLike, index: bool = False) -> Path:
    """A pandas DataFrame as CSV."""
    return save_text(df.to_csv(index=index), path)


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    return save_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def save_npz(arrays: dict, path: str | os.PathLike) -> Path:
    """Uncompressed ``.npz``; read back with ``np.load(path, allow_pickle=False)``."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temp name
            np.savez(f, **arrays)

    return atomic_write(path, write)
