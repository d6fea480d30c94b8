"""e3nn model sources: a factory ``pkg.module:fn`` (optionally ``@weights``, a state dict loaded with
``torch.load(weights_only=True)``) or a file holding a whole pickled module (refused without ``trust``);
see :mod:`irrepprobe.adapters.e3nn.adapter` for the conventions. :func:`_mentions_e3nn` reads raw bytes
and archive member names only."""
from __future__ import annotations

import importlib
import inspect
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path

import torch

from ...data.structures import sha256
from ...errors import IrrepprobeError
from ...fileio import check_file, kind_of, pickle_bytes, torch_load, zip_names

FACTORY = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<fn>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
                     r"(?:@(?P<weights>.+))?$")
STATE_KEYS = ("state_dict", "model_state_dict", "model")
SCAN_BYTES = 64 << 20


def parse_factory(source: str):
    """``(module, function, weights or None)`` of a factory source, or None when it is not one."""
    m = FACTORY.match(str(source).strip())
    return (m["module"], m["fn"], m["weights"]) if m else None


def _mentions_e3nn(path: Path) -> bool:
    """Whether the pickle bytes of a torch file (or a TorchScript archive's member names) name e3nn: raw
    bytes only, nothing is unpickled."""
    if kind_of(path) == "torchscript" and any("e3nn" in n for n in zip_names(path)):
        return True
    raw = pickle_bytes(path, SCAN_BYTES, scripted=True)
    return raw is not None and b"e3nn" in raw


def load_file(path: Path, trust: bool):
    """The whole module pickled in ``path`` (unpickled only with ``trust``; a state dict or checkpoint is
    pointed to ``pkg.module:fn@FILE``)."""
    obj = None
    if kind_of(path) in ("torch-zip", "pickle"):
        try:  # safe on any file: a weights file loads, a pickled module is refused without running it
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            obj = None
    if obj is None:
        obj = torch_load(path, trust, what="this file (a whole pickled module)")
    if isinstance(obj, dict):
        raise IrrepprobeError(f"{path} holds a {type(obj).__name__} (weights or a checkpoint), not a whole module: "
                              f"give the factory that builds the model and the weights, pkg.module:fn@{path}")
    if not isinstance(obj, torch.nn.Module):
        raise IrrepprobeError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def load_factory(source: str, trust: bool):
    """The module a factory source builds, with its weights loaded: ``(module, source, sha256 of the weights
    or None, info)``, the source naming the weights by their absolute path."""
    module_name, fn_name, weights = parse_factory(source)
    fn = import_factory(module_name, fn_name)
    module = call_factory(fn, source)
    digest = None
    if weights:
        wpath = check_file(Path(weights).expanduser())
        load_weights(module, wpath, trust)
        weights, digest = str(wpath.resolve()), sha256(wpath)
        source = f"{module_name}:{fn_name}@{weights}"
    info = {"factory": f"{module_name}:{fn_name}", "weights": weights, "accepts_seed": takes_seed(fn)}
    return module, source, digest, info


def import_factory(module_name: str, fn_name: str):
    """The callable ``module_name:fn_name`` names (the current directory searched last)."""
    def missing(e: ModuleNotFoundError) -> bool:  # the named module itself, not one it imports
        return e.name is not None and (module_name == e.name or module_name.startswith(e.name + "."))

    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not missing(e):
            raise
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)  # searched last, as `python -m` would search it first
        try:
            mod = importlib.import_module(module_name)
        except ModuleNotFoundError as e2:
            if not missing(e2):
                raise
            raise IrrepprobeError(f"cannot import {module_name!r} for the factory {module_name}:{fn_name}: no "
                                  "such module on the Python path or in the current directory") from None
    fn = mod
    for part in fn_name.split("."):
        if not hasattr(fn, part):
            raise IrrepprobeError(f"module {module_name} has no {fn_name!r} (the factory {module_name}:{fn_name})")
        fn = getattr(fn, part)
    if not callable(fn):
        raise IrrepprobeError(f"{module_name}:{fn_name} is not callable: give a function returning the model")
    return fn


def call_factory(fn, source, **kwargs) -> torch.nn.Module:
    """``fn(**kwargs)``, which must return a ``torch.nn.Module``."""
    module = fn(**kwargs)
    if not isinstance(module, torch.nn.Module):
        raise IrrepprobeError(f"the factory {source} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def takes_seed(fn) -> bool:
    """Whether ``fn`` takes a ``seed`` argument."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "seed" in params


def load_weights(module: torch.nn.Module, path: Path, trust: bool) -> None:
    """The state dict in ``path`` (plain, or under one of ``STATE_KEYS``) loaded into ``module``; every name
    must fit."""
    kind = kind_of(path)
    if kind == "torchscript":
        raise IrrepprobeError(f"{path} is a TorchScript file, not weights: give a state dict (torch.save(model."
                              "state_dict()))")
    if kind not in ("torch-zip", "pickle"):
        raise IrrepprobeError(f"{path} is not a PyTorch weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # more than tensors and containers: unpickling can run code
        state = torch_load(path, trust, "this weights file")
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"{path} is a damaged or truncated PyTorch file ({first})") from None
    if isinstance(state, dict) and not all(torch.is_tensor(v) for v in state.values()):
        state = next((state[k] for k in STATE_KEYS if isinstance(state.get(k), dict)), state)
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise IrrepprobeError(f"{path} holds no state dict (name -> tensor, or one under {', '.join(STATE_KEYS)})")
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        what = (f"missing {result.missing_keys[0]!r}" if result.missing_keys
                else f"unexpected {result.unexpected_keys[0]!r}")
        n = len(result.missing_keys) + len(result.unexpected_keys)
        raise IrrepprobeError(f"the weights in {path} do not fit the factory's model ({what}, {n} names differ)")
