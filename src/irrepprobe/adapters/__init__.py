"""One short module per model family behind one protocol (:mod:`.base`). Family packages (sevenn,
mace, nequip) are imported only inside their adapter, and only when it is used."""
from __future__ import annotations

import importlib

from ..errors import IrrepprobeError
from .base import Adapter, Batch, Loaded, Point, Quantity, passes, predict_all

# name -> "module:class"; auto-detection asks them in this order
FAMILIES = {
    "irrepprobe": "irrepprobe.adapters.irrepprobe.adapter:IrrepprobeAdapter",
    "sevenn": "irrepprobe.adapters.sevenn.adapter:SevenNetAdapter",
    "mace": "irrepprobe.adapters.mace.adapter:MACEAdapter",  # before e3nn, whose detection takes any e3nn pickle
    "nequip": "irrepprobe.adapters.nequip.adapter:NequIPAdapter",  # before e3nn: its files also name e3nn
    "e3nn": "irrepprobe.adapters.e3nn.adapter:E3nnAdapter",
}


def get_adapter(name: str) -> Adapter:
    if name not in FAMILIES:
        raise IrrepprobeError(f"unknown model format {name!r}; valid: auto, {', '.join(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def detect(source: str) -> Adapter:
    """The adapter for ``source`` (a file or a name): the first family that accepts it."""
    from pathlib import Path

    path = Path(source)
    if ":" not in str(source) and (path.suffix or "/" in str(source)) and not path.exists():
        raise IrrepprobeError(f"model file not found: {source}")
    for name in FAMILIES:
        adapter = get_adapter(name)
        if adapter.accepts(str(source)):
            return adapter
    raise IrrepprobeError(f"cannot tell which model family {source} belongs to: pass --format "
                          f"({', '.join(FAMILIES)})")


def load_model(source, fmt: str = "auto", trust: bool = False, device="cpu", head: str | None = None) -> Loaded:
    """``source`` loaded by its family's adapter, measured at ``head`` (a MACE head or a SevenNet fidelity;
    None: the model's default one, refused when it has several and no default: see :meth:`Adapter.choose`)."""
    adapter = detect(source) if fmt == "auto" else get_adapter(fmt)
    return adapter.choose(adapter.load(str(source), trust=trust, device=device), head)


__all__ = ["Adapter", "Batch", "FAMILIES", "Loaded", "Point", "Quantity", "detect", "get_adapter", "load_model", "passes",
           "predict_all"]
