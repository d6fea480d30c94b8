"""Errors of a trained checkpoint on one of its own splits, as a DataFrame."""
from __future__ import annotations

import pandas as pd
from e3nn import o3

from ..config import Config
from ..data import SPLITS, get_target, load_qm9, target_values
from ..errors import IrrepprobeError
from .checkpoint import load_checkpoint, model_from_checkpoint
from .distributed import resolve_device
from .loop import predict


def evaluate(ckpt_path, split: str = "test", device: str = "auto", batch_size: int = 128,
             cache_dir: str | None = None) -> pd.DataFrame:
    """One row per part of the target (the whole, each irrep, and the vector norm for l = 1)."""
    if split not in SPLITS:
        raise IrrepprobeError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    ckpt = load_checkpoint(ckpt_path)
    config = Config.from_dict(ckpt["config"])
    indices = ckpt["split"][split]
    if indices.numel() == 0:
        raise IrrepprobeError(f"the {split} split of {ckpt_path} is empty")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    qm9 = load_qm9(cache_dir or config.data.cache_dir)
    pred, true = predict(model, qm9, target_values(qm9, config.data.target), indices, batch_size, dev)
    target = get_target(config.data.target)
    rows = [_row(split, target, "all", pred, true)]
    irreps = o3.Irreps(target.irreps)
    if len(irreps) > 1 or irreps.dim > 1:
        for s, (_, ir) in zip(irreps.slices(), irreps):
            rows.append(_row(split, target, str(ir), pred[:, s], true[:, s]))
            if ir.l > 0:
                rows.append(_row(split, target, f"|{ir}|", pred[:, s].norm(dim=1), true[:, s].norm(dim=1)))
    return pd.DataFrame(rows)


def _row(split, target, part, pred, true) -> dict:
    err = pred - true
    return {"split": split, "target": target.name, "part": part, "unit": target.unit, "n": len(pred),
            "mae": float(err.abs().mean()), "rmse": float(err.pow(2).mean().sqrt())}
