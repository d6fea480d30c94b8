"""One short module per model family behind one protocol (:mod:`.base`). Family packages (sevenn,
mace, nequip) are imported only inside their adapter, and only when it is used."""
from __future__ import annotations

import importlib

from ..errors import IrrepprobeError
from .base import Adapter, Batch, Loaded, Point, Quantity, passes, predict_all

# name -> "module:class"; auto-detection asks them in this order, with the families other packages register
# in the entry point group GROUP before e3nn (whose detection takes any e3nn pickle)
FAMILIES = {
    "irrepprobe": "irrepprobe.adapters.irrepprobe.adapter:IrrepprobeAdapter",
    "sevenn": "irrepprobe.adapters.sevenn.adapter:SevenNetAdapter",
    "mace": "irrepprobe.adapters.mace.adapter:MACEAdapter",  # before e3nn, whose detection takes any e3nn pickle
    "nequip": "irrepprobe.adapters.nequip.adapter:NequIPAdapter",  # before e3nn: its files also name e3nn
    "so3lr": "irrepprobe.adapters.so3lr.adapter:SO3LRAdapter",
    "e3nn": "irrepprobe.adapters.e3nn.adapter:E3nnAdapter",
}
GROUP = "irrepprobe.adapters"  # [project.entry-points."irrepprobe.adapters"] name = "package.module:Class"
GUIDE = "the adapter guide, irrepprobe/adapters/GUIDE.md"


def families() -> dict[str, str]:
    """Every family by name: ours, then the entry points of GROUP (a built-in name wins), e3nn last."""
    from importlib.metadata import entry_points

    built = dict(FAMILIES)
    last = {"e3nn": built.pop("e3nn")}
    found = {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.name not in FAMILIES}
    return {**built, **dict(sorted(found.items())), **last}


def get_adapter(name: str) -> Adapter:
    known = families()
    if name not in known:
        raise IrrepprobeError(f"unknown model format {name!r}; valid: auto, {', '.join(known)}")
    return _instance(name, known[name])


def _instance(name: str, spec: str) -> Adapter:
    """The adapter ``spec`` ("module:class") names, or one line why not."""
    module, _, cls = spec.partition(":")
    try:
        adapter = getattr(importlib.import_module(module), cls)()
    except (ImportError, AttributeError) as e:
        raise IrrepprobeError(f"the {name} adapter ({spec}) cannot be loaded: {e}") from None
    if not isinstance(adapter, Adapter):
        raise IrrepprobeError(f"the {name} adapter ({spec}) is not an irrepprobe Adapter; see {GUIDE}")
    return adapter


def detect(source: str) -> Adapter:
    """The adapter for ``source`` (a file or a name): the first family that accepts it."""
    from pathlib import Path

    path = Path(source)
    if ":" not in str(source) and (path.suffix or "/" in str(source)) and not path.exists():
        raise IrrepprobeError(f"model file not found: {source}")
    tried = []
    for name, spec in families().items():  # the entry points read once
        try:
            adapter = _instance(name, spec)
        except IrrepprobeError:  # a broken third-party adapter must not hide the others
            continue
        tried.append(name)
        if adapter.accepts(str(source)):
            return adapter
    raise IrrepprobeError(f"no adapter claims {source} (tried {', '.join(tried)}): its family is not "
                          f"supported; pass --format if it is one of these, or write an adapter ({GUIDE})")


def load_model(source, fmt: str = "auto", trust: bool = False, device="cpu", head: str | None = None) -> Loaded:
    """``source`` loaded by its family's adapter, measured at ``head`` (a MACE head or a SevenNet fidelity;
    None: the model's default one, refused when it has several and no default: see :meth:`Adapter.choose`)."""
    adapter = detect(source) if fmt == "auto" else get_adapter(fmt)
    return adapter.choose(adapter.load(str(source), trust=trust, device=device), head)


__all__ = ["Adapter", "Batch", "FAMILIES", "GROUP", "Loaded", "families", "Point", "Quantity", "detect", "get_adapter", "load_model", "passes",
           "predict_all"]
