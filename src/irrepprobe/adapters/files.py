"""What a model file is, told from its bytes before anything is unpickled, and the trust decision."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import IrrepprobeError

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
