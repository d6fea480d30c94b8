"""SevenNet files and names: what a source is (:func:`accepts`, :func:`looks_like_checkpoint`,
:func:`resolve_name`, from names and raw bytes only), the model sevenn's own ``SevenNetCheckpoint``
rebuilds from a checkpoint (:func:`load_checkpoint`), and a sevenn checkpoint written for a model
(:func:`write_checkpoint`).

Checkpoints are pickles: nothing is unpickled without ``trust``. A deployed model (``sevenn deploy``,
TorchScript) takes no hooks and is refused with what to give instead."""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

from ...errors import IrrepprobeError
from ...fileio import check_file, describe, kind_of, pickle_bytes, refuse_untrusted, save_torch, torch_load, zip_names
from .runtime import _sevenn

# sevenn's config keys; a checkpoint's pickle names them as plain strings
_MARKERS = (b"num_convolution_layer", b"model_state_dict")
_ONE_OF = (b"self_connection_type", b"interaction_type", b"irreps_manual")
_HEAD_BYTES = 8 << 20  # how much of a checkpoint's pickle accepts() reads (sevenn's: ~50 kB)


class _NotLocal(Exception):
    pass


@contextmanager
def _no_download():
    """sevenn's name resolution, minus its download of a checkpoint the package does not ship."""
    import sevenn.util as su

    def refuse(path, url):
        raise _NotLocal(path, url)

    saved = su.download_checkpoint
    su.download_checkpoint = refuse
    try:
        yield su
    finally:
        su.download_checkpoint = saved


def resolve_name(name: str) -> tuple[str | None, str | None]:
    """(path, None) for a pretrained name whose checkpoint is on disk, (None, why) for a known name
    whose checkpoint is not, (None, None) for no SevenNet name. Never downloads, never unpickles."""
    try:
        import sevenn.util  # noqa: F401
    except ImportError:
        return None, None
    with _no_download() as su:
        try:
            return su.pretrained_name_to_path(str(name)), None
        except ValueError:
            return None, None
        except _NotLocal as e:
            path, url = e.args
            return None, (f"the SevenNet checkpoint {name!r} is not shipped with this sevenn package; download "
                          f"it{' from ' + url if url else ''} to {path} or ~/.cache/sevennet, or give the "
                          "file's path")
        except FileNotFoundError as e:
            return None, f"the SevenNet checkpoint {name!r} is missing from the sevenn package ({e})"


def _is_deployed(path: Path) -> bool:
    """A TorchScript model written by ``sevenn deploy`` (its extra files name sevenn's metadata)."""
    names = zip_names(path)
    return (any(n.endswith("extra/chemical_symbols_to_index") for n in names)
            and any(n.endswith("extra/cutoff") for n in names))


def looks_like_checkpoint(path) -> bool:
    """Whether the raw bytes of ``path``'s pickle name sevenn's config keys (no unpickling)."""
    raw = pickle_bytes(path, _HEAD_BYTES)
    return raw is not None and all(m in raw for m in _MARKERS) and any(m in raw for m in _ONE_OF)


def _is_path(source: str) -> bool:
    """A source given as a file (it exists, or its spelling says so), not as a pretrained name."""
    return Path(str(source)).exists() or os.sep in str(source) or str(source).endswith((".pth", ".pt"))


def accepts(source: str) -> bool:
    """A SevenNet checkpoint or deployed model on disk, or a pretrained name sevenn knows."""
    path = Path(str(source))
    if path.is_file():
        kind = kind_of(path)
        if kind == "torchscript":
            return _is_deployed(path)  # accepted so that load() can say what to give instead
        return kind in ("torch-zip", "pickle") and looks_like_checkpoint(path)
    if _is_path(source):
        return False
    found, why = resolve_name(str(source))
    return found is not None or why is not None


def _resolve(source: str) -> tuple[Path, str | None]:
    """(file, pretrained name or None)."""
    path = Path(str(source))
    if _is_path(source):
        return check_file(path), None
    _sevenn()
    found, why = resolve_name(str(source))
    if why:
        raise IrrepprobeError(why)
    if found is None:
        import sevenn.util as su

        raise IrrepprobeError(f"{source} is neither a file nor a SevenNet pretrained name; names: "
                              f"{', '.join(su.get_available_pretrained_models())}")
    return check_file(found), str(source)


def load_checkpoint(source: str, trust: bool):
    """(module, config, file, pretrained name or None): the model sevenn's ``SevenNetCheckpoint``
    rebuilds from the checkpoint file or pretrained name ``source``, with e3nn's tensor products."""
    path, pretrained = _resolve(source)
    kind = kind_of(path)
    if kind == "torchscript":
        raise IrrepprobeError(f"{path} is a TorchScript file (a deployed SevenNet model), which takes no hooks: "
                              "give the .pth checkpoint it was deployed from")
    if kind not in ("torch-zip", "pickle"):
        raise IrrepprobeError(f"{path} is not a PyTorch file ({describe(kind)})")
    what = f"the SevenNet checkpoint {pretrained!r}" if pretrained else "this model file"
    refuse_untrusted(path, trust, what)  # before anything below unpickles
    _sevenn()
    from sevenn.checkpoint import SevenNetCheckpoint

    obj = torch_load(path, trust, what)  # damaged or truncated files say so here
    if not (isinstance(obj, dict) and isinstance(obj.get("config"), dict) and obj["config"]
            and isinstance(obj.get("model_state_dict"), dict) and obj["model_state_dict"]):
        raise IrrepprobeError(f"{path} is not a SevenNet checkpoint: it holds no sevenn config and model "
                              "weights")
    del obj
    cp = SevenNetCheckpoint(str(path))  # sevenn's own reading of the checkpoint (config patches, rebuild)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = cp.config
            module = cp.build_model()  # e3nn tensor products (no cuEquivariance, FlashTP, oeq)
        config.update({"cuequivariance_config": {"use": False}, "use_flash_tp": False, "use_oeq": False})
    except Exception as e:  # a config or weights that this sevenn cannot rebuild
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IrrepprobeError(f"sevenn cannot rebuild the model in {path} ({type(e).__name__}: "
                              f"{first[:160]})") from None
    return module, config, path, pretrained


def write_checkpoint(module, config: dict, path, without=None, source=None) -> Path:
    """``module`` with ``config`` as a sevenn checkpoint (``.pth``: its config and weights) that sevenn's
    own ``SevenNetCalculator`` and ``SevenNetCheckpoint`` load; written atomically. ``without`` and
    ``source`` are noted under the checkpoint's ``irrepprobe`` key."""
    import sevenn

    # the weights are in this sevenn's layout: a checkpoint marked with an older version would get the
    # old-to-new patch of its state dict on loading (reordered convolution weights)
    config = {**config, "version": sevenn.__version__}
    # e3nn's generated code may hold traced constants (``_tensor_constant*``) once a copy of the model has
    # been trained; sevenn rebuilds them from the config and refuses them as unexpected keys
    state = {k: v for k, v in module.state_dict().items() if "._tensor_constant" not in k}
    return save_torch({"config": config, "model_state_dict": state,
                       "epoch": 0, "irrepprobe": {"without": without, "from": source}}, path)
