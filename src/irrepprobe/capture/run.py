"""Capture a trained checkpoint over one of its own splits."""
from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data import SPLITS, load_qm9, loader, target_values
from ..errors import IrrepprobeError
from ..train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint, untrained_like, versions
from ..train.distributed import resolve_device
from .hooks import Recorder, find_points
from .store import Capture, load_capture, summary_table, write_capture


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_capture(model, batches, points, nodes_dir=None):
    """Run ``model`` over ``batches`` (torch_geometric Batches with ``y``) under a :class:`Recorder`.
    Returns the recorder and the stacked (outputs, targets, molecule ids)."""
    outputs, targets, ids = [], [], []
    device = next(model.parameters()).device
    n = len(batches.dataset) if hasattr(batches, "dataset") else None
    with Recorder(model, points, nodes_dir, n_molecules=n) as rec, torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            rec.begin(batch.batch, batch.num_graphs)
            outputs.append(model(batch).double().cpu())
            targets.append(batch.y.double().cpu())
            ids.append(batch.idx.cpu())
    return rec, torch.cat(outputs), torch.cat(targets), torch.cat(ids)


def capture_checkpoint(ckpt_path, split: str = "test", subset: int | None = None, layers=None,
                       out=None, device: str = "auto", batch_size: int = 64, save_nodes: bool = False,
                       cache_dir: str | None = None) -> Capture:
    """Capture ``ckpt_path`` over its own ``split`` (the first ``subset`` molecules of it) into ``out``
    (default: ``<checkpoint dir>/capture-<split>``) and return the loaded :class:`Capture`."""
    if split not in SPLITS:
        raise IrrepprobeError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if subset is not None and subset < 1:
        raise IrrepprobeError(f"--subset must be a positive number of molecules, got {subset}")
    ckpt = load_checkpoint(ckpt_path)
    config = Config.from_dict(ckpt["config"])
    indices = ckpt["split"][split]
    if subset is not None:
        indices = indices[:subset]
    if indices.numel() == 0:
        raise IrrepprobeError(f"the {split} split of {ckpt_path} is empty: nothing to capture")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    points = find_points(model, layers)
    out = Path(out) if out else Path(ckpt_path).parent / f"capture-{split}"

    qm9 = load_qm9(cache_dir or config.data.cache_dir)
    y = target_values(qm9, config.data.target)
    t0 = time.time()
    rec, pred, true, ids = run_capture(model, loader(qm9, y, indices, batch_size), points,
                                       out / "nodes" if save_nodes else None)
    seconds = time.time() - t0

    info = {(p, b.name): (b.l, b.parity, b.mul) for p, bl in rec.blocks.items() for b in bl}
    stats = rec.channel_stats()
    summary = summary_table(stats, info)
    arrays = {"output": pred.numpy(), "target": true.numpy(), "error": (pred - true).numpy(),
              "index": ids.numpy(), "n_atoms": qm9.n_atoms[ids].numpy()}
    for (p, b, kind), a in rec.molecule_arrays().items():
        arrays[f"mol/{p}/{b}/{kind}"] = a
    for (p, b), s in stats.items():
        for k in ("mean", "var", "min", "max"):
            arrays[f"chan/{p}/{b}/{k}"] = np.asarray(s[k], dtype=np.float64)
    meta = {
        "format": "irrepprobe.capture", "format_version": 1,
        "checkpoint": str(Path(ckpt_path).resolve()), "checkpoint_sha256": sha256(ckpt_path),
        "config": ckpt["config"], "target": config.data.target, "split": split,
        "n_molecules": int(indices.numel()), "seconds": round(seconds, 3),
        "points": {p: {"irreps": str(ir), "blocks": [{"name": b.name, "l": b.l, "parity": b.parity,
                                                      "mul": b.mul} for b in rec.blocks[p]]}
                   for p, ir in points.items() if p not in rec.skipped},
        "skipped": rec.skipped, "layout": "mul_ir", "nodes": bool(save_nodes),
        "device": str(dev), "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_capture(out, arrays, meta, summary)
    return load_capture(out)


def checkpoint_of(capture: Capture, checkpoint=None) -> Path:
    """The checkpoint a capture was taken from (or ``checkpoint``), refused if it has changed since."""
    path = Path(checkpoint or capture.meta["checkpoint"])
    if not path.exists():
        raise IrrepprobeError(f"the checkpoint of capture {capture.path} is not at {path}: pass --checkpoint")
    if sha256(path) != capture.meta["checkpoint_sha256"]:
        raise IrrepprobeError(f"{path} is not the checkpoint capture {capture.path} was taken from "
                              "(its sha256 differs)")
    return path


def capture_untrained(capture: Capture, out, checkpoint=None, device: str = "auto", batch_size: int = 64,
                      cache_dir: str | None = None) -> Capture:
    """Capture, over the same molecules and points, the untrained model of ``capture``'s checkpoint
    (same config and seed). Writes ``out/untrained.pt`` and the capture ``out/capture``."""
    out = Path(out)
    ckpt = load_checkpoint(checkpoint_of(capture, checkpoint))
    path = save_checkpoint(out / "untrained.pt", **untrained_like(ckpt))
    return capture_checkpoint(path, split=capture.meta["split"], subset=capture.meta["n_molecules"],
                              layers=capture.points, out=out / "capture", device=device,
                              batch_size=batch_size, cache_dir=cache_dir)
