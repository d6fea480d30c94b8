"""NequIP and Allegro files: what kind of file a path is (:func:`file_kind`, from names and raw bytes
only), the model nequip's own ``load_saved_model`` rebuilds from a checkpoint or package
(:func:`load_model`), and a nequip-train checkpoint written for a smaller model (:func:`write_checkpoint`).

Checkpoints and packages are pickles: nothing is unpickled without ``trust``. Compiled models
(``.nequip.pth`` TorchScript, ``.nequip.pt2`` AOTInductor) take no hooks and are refused with what to give
instead."""
from __future__ import annotations

import copy
import warnings
import zipfile
from pathlib import Path

import torch

from ...errors import IrrepprobeError
from ...fileio import check_file, describe, kind_of, pickle_bytes, refuse_untrusted, save_torch, torch_load, zip_names
from .runtime import _nequip, _nequip_state

_HEAD_BYTES = 8 << 20  # how much of a checkpoint's pickle accepts() reads
_CKPT_MARKERS = (b"info_dict", b"training_module", b"nequip")  # keys and names every nequip-train ckpt holds
_COMPILED = {".nequip.pth": "TorchScript, from nequip-compile --mode torchscript",
             ".nequip.pt2": "AOTInductor, from nequip-compile --mode aotinductor"}
_GIVE_INSTEAD = "give the .ckpt checkpoint or the .nequip.zip package (nequip-package build) it was compiled from"


def file_kind(path) -> str | None:
    """"checkpoint", "package", "compiled" or None (not a NequIP-framework model file), from the name,
    archive member names and raw pickle bytes only."""
    path = Path(path)
    name = path.name.lower()
    if any(name.endswith(s) for s in _COMPILED):
        return "compiled"
    kind = kind_of(path)
    names = zip_names(path) if kind in ("torch-zip", "zip", "torchscript") else []
    if name.endswith(".nequip.zip") or any(n.endswith("model/package_metadata.txt") for n in names):
        return "package" if any(n.endswith("model/package_metadata.txt") for n in names) else None
    if _names_nequip_metadata(path, kind, names):
        return "compiled"  # a compiled model renamed away from .nequip.pth / .nequip.pt2
    raw = pickle_bytes(path, _HEAD_BYTES) or b""
    return "checkpoint" if raw and all(m in raw for m in _CKPT_MARKERS) else None


def _names_nequip_metadata(path: Path, kind: str, names: list[str]) -> bool:
    """A TorchScript file or AOTInductor archive whose metadata holds nequip's keys (type_names, r_max):
    nequip-compile writes them as TorchScript extra files or into the AOTInductor wrapper's metadata."""
    if kind == "torchscript":
        return any(n.endswith("extra/type_names") for n in names) and any(n.endswith("extra/r_max") for n in names)
    meta = [n for n in names if "/aotinductor/" in n and n.endswith("_metadata.json")]
    try:
        with zipfile.ZipFile(path) as z:
            return any(b'"type_names"' in z.read(n) and b'"r_max"' in z.read(n) for n in meta)
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


def _package_config(path: Path) -> dict:
    """The training config (``info_dict``) that nequip-package stores as text, with the code versions
    from its metadata."""
    import yaml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = torch.package.PackageImporter(str(path))
        config = yaml.safe_load(imp.load_text("model", "config.yaml")) or {}
        meta = yaml.safe_load(imp.load_text("model", "package_metadata.txt")) or {}
    config.setdefault("versions", meta.get("versions") or {})  # the package keeps them apart from the config
    return config


def _symbols_to_numbers(type_names) -> list[int] | None:
    from ase.data import atomic_numbers

    nums = [atomic_numbers.get(t) for t in type_names]
    return None if any(n is None for n in nums) else nums


def load_model(source, trust: bool):
    """The eager module nequip's ``load_saved_model`` rebuilds from the checkpoint or package ``source``,
    with its training config (``info_dict``), the checked path and the file's kind ("checkpoint" or
    "package"); refused without ``trust`` before anything is unpickled."""
    path = check_file(Path(str(source)))
    fkind = file_kind(path)
    if fkind == "compiled":
        suffix = next((s for s in _COMPILED if path.name.lower().endswith(s)),
                      ".nequip.pth" if kind_of(path) == "torchscript" else ".nequip.pt2")
        raise IrrepprobeError(f"{path} is a compiled NequIP/Allegro model ({_COMPILED[suffix]}), which takes "
                              f"no hooks: {_GIVE_INSTEAD}")
    kind = kind_of(path)
    if fkind is None and kind not in ("torch-zip", "pickle"):
        raise IrrepprobeError(f"{path} is not a PyTorch file ({describe(kind)})")
    what = "this NequIP package" if fkind == "package" else "this NequIP checkpoint"
    refuse_untrusted(path, trust, what)  # before anything below unpickles
    _nequip()
    if fkind == "package":
        try:
            info_dict = _package_config(path)
        except Exception as e:
            raise IrrepprobeError(f"{path} is not a readable nequip package ({type(e).__name__}: "
                                  f"{str(e).strip()[:160]})") from None
    else:
        obj = torch_load(path, trust, what)  # damaged or truncated files say so here
        hp = obj.get("hyper_parameters") if isinstance(obj, dict) else None
        info_dict = hp.get("info_dict") if isinstance(hp, dict) else None
        if not isinstance(info_dict, dict) or "training_module" not in info_dict or "state_dict" not in obj:
            raise IrrepprobeError(f"{path} is not a nequip-train checkpoint: it holds no nequip training "
                                  "config and weights")
        del obj
    from nequip.model.saved_models.load_utils import load_saved_model

    try:
        with _nequip_state(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # an absolute path: load_saved_model downloads any source that starts with "nequip.net:"
            module = load_saved_model(str(path.resolve()), compile_mode="eager")
    except Exception as e:  # a config or weights that this nequip (or its plugins) cannot rebuild
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"nequip cannot rebuild the model in {path} ({type(e).__name__}: "
                              f"{first[:200]}); Allegro models need nequip-allegro installed") from None
    return module, info_dict, path, fkind


def read_checkpoint(path: Path) -> dict:
    """The nequip-train checkpoint at ``path`` as the dict Lightning saved (trusted: a model came from it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=False)


def write_checkpoint(source_ckpt: dict, model_config: dict, state: dict, params: list, path, drop) -> None:
    """A nequip-train checkpoint (the Lightning dict nequip's own ``ModelFromCheckpoint`` reads) holding the
    small model: the original's with the model config's ``l_max`` lowered and the weights replaced; the
    optimiser and loop states of the original's training are left out (they belong to other weights)."""
    ck = {k: v for k, v in source_ckpt.items() if k not in ("optimizer_states", "lr_schedulers", "loops",
                                                           "callbacks")}
    ck["hyper_parameters"] = hp = copy.deepcopy(source_ckpt["hyper_parameters"])
    hp["model"] = model_config  # what the training module builds, and the copy its info_dict keeps
    if isinstance(hp.get("info_dict", {}).get("training_module", {}).get("model"), dict):
        hp["info_dict"]["training_module"]["model"] = copy.deepcopy(model_config)
    prefix = next(k for k in source_ckpt["state_dict"] if k.endswith("model.func.type_embed.embed_module.weight"))
    prefix = prefix[: -len("model.func.type_embed.embed_module.weight")]
    ck["state_dict"] = {**{k: v for k, v in source_ckpt["state_dict"].items()
                           if not k.startswith(prefix) and not k.startswith("ema.ema_weight_")},
                        **{prefix + k: v.detach().cpu() for k, v in state.items()}}
    if any(k.startswith("ema.ema_weight_") for k in source_ckpt["state_dict"]):
        # the training module's exponential moving average keeps one copy per parameter, in order: the small
        # model's own weights (so that swapping the average in or out changes nothing)
        for k, v in enumerate(params):
            ck["state_dict"][f"ema.ema_weight_{k}"] = v.detach().cpu().clone()
    ck["irrepprobe"] = {"without": list(drop)}
    save_torch(ck, path)
