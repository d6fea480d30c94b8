"""Files: atomic writes (a killed run leaves the previous good file, never half of a new one), and what
a model file is, told from its bytes before anything is unpickled, with the trust decision."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import IrrepprobeError


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


PICKLE_PROTOCOLS = bytes(range(2, 6))


def kind_of(path) -> str:
    """"torchscript", "torch-zip" (torch.save archive), "pickle" (legacy torch.save or plain pickle),
    "broken-zip" (an archive cut short), "text", "empty" or "unknown"."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        return "zip"
    if head.startswith(b"PK\x03\x04"):
        return "broken-zip"  # a zip's start without its central directory: cut short
    if head[0] == 0x80 and len(head) > 1 and head[1] in PICKLE_PROTOCOLS:
        return "pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "text" if all(c.isprintable() or c in "\n\r\t" for c in text) else "unknown"


def check_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise IrrepprobeError(f"model file not found: {path}")
    if path.is_dir():
        raise IrrepprobeError(f"{path} is a directory; give the model file")
    return path


def refuse_untrusted(path, trust: bool, what: str = "this model file") -> None:
    """The one refusal line for a file that must be unpickled to load."""
    if not trust:
        raise IrrepprobeError(f"refusing to load {path}: {what} holds pickled Python objects, which can run code "
                              "when loaded; if you trust its source, pass --trust")


def torch_load(path, trust: bool, what: str = "this model file"):
    """``torch.load`` of a file that needs unpickling, only with ``trust``; a damaged or foreign file
    says what it is instead of an unpickling error."""
    path = check_file(path)
    kind = kind_of(path)
    if kind == "torchscript":
        raise IrrepprobeError(f"{path} is a TorchScript file, which takes no hooks: give the eager model's "
                              "checkpoint instead")
    if kind not in ("torch-zip", "pickle"):
        raise IrrepprobeError(f"{path} is not a PyTorch file ({describe(kind)})")
    refuse_untrusted(path, trust, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"{path} is a damaged or truncated PyTorch file ({first})") from None


def describe(kind: str) -> str:
    """Why a file of ``kind`` is not a model file, in words."""
    return {"text": "it is a text file", "empty": "it is empty", "zip": "it is a zip archive without a pickle",
            "torchscript": "it is a TorchScript file, which takes no hooks",
            "broken-zip": "it is a truncated or damaged torch archive",
            "unknown": "its bytes are neither a torch archive nor a pickle"}.get(kind, kind)


def pickle_bytes(path, limit: int, scripted: bool = False) -> bytes | None:
    """The first ``limit`` bytes of the pickle inside a torch archive (its ``data.pkl``; with ``scripted``
    a TorchScript archive's too) or of a plain pickle, to look for names in without unpickling; None for
    other files or one that cannot be read. The one byte scan of model files."""
    kind = kind_of(path)
    try:
        if kind == "torch-zip" or (scripted and kind == "torchscript"):
            with zipfile.ZipFile(path) as z:
                member = next(n for n in z.namelist() if n.endswith("data.pkl"))
                with z.open(member) as f:
                    return f.read(limit)
        if kind == "pickle":
            with open(path, "rb") as f:
                return f.read(limit)
    except (zipfile.BadZipFile, OSError, StopIteration, RuntimeError):
        return None
    return None


def zip_names(path) -> list[str]:
    """The member names of a zip archive; empty for anything else."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []
