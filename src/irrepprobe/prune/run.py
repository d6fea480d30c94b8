"""Prune and retrain: baseline capture and utilisation, the orders to drop, pruned runs from scratch
(same split, budget and seeds), their captures, and one comparison table. Every run directory is
resumable: finished runs (``result.json``) are skipped, interrupted ones resume from ``last.pt``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..capture import capture_checkpoint, load_capture
from ..config import Config
from ..errors import IrrepprobeError
from ..metrics import THRESHOLD, hidden_points, invariant_targets, knn_scores, utilisation
from ..models import build_model, num_parameters
from ..train import load_checkpoint, train
from .policy import orders_to_drop, pruned_config


def _capture(ckpt: Path, out: Path):
    if (out / "meta.json").exists():
        return load_capture(out)
    return capture_checkpoint(ckpt, out=out, device="cpu")


def _run(config: Config, out: Path, log) -> Path:
    if (out / "result.json").exists():
        log(f"{out}: done, skipped")
    else:
        resume = (out / "last.pt").exists()
        log(f"{out}: {'resuming' if resume else 'training'} ls={config.model.ls} seed={config.train.seed}")
        train(None if resume else config, out, resume=resume, progress=False, log=lambda *a: None)
    return out / "best.pt"


def _measure(variant: str, seed: int, ckpt: Path, out: Path, molecules: int | None):
    cap = _capture(ckpt, out / "capture")
    util = utilisation(cap, ckpt, molecules=molecules, device="cpu")
    knn = knn_scores(cap, invariant_targets(cap), points=hidden_points(cap))
    config = Config.from_dict(load_checkpoint(ckpt)["config"])
    mae = float(abs(cap.errors).mean())
    target_knn = knn[knn["target"] != "squared error"].groupby("block")["knn_r2"].mean()
    row = {"variant": variant, "seed": seed, "ls": str(sorted(config.model.ls)),
           "params": num_parameters(build_model(config)), "test_mae": mae,
           "knn_r2_target": float(knn[knn["target"] != "squared error"]["knn_r2"].mean()),
           "knn_r2_error": float(knn[knn["target"] == "squared error"]["knn_r2"].mean()),
           **{f"knn_r2_target_{b}": v for b, v in target_knn.items()}}
    util = util.assign(variant=variant, seed=seed)
    return row, util, cap


def prune(ckpt, out, drop: list[int] | None = None, seeds: int = 1, threshold: float = THRESHOLD,
          molecules: int | None = 1000, log=print) -> dict:
    """Prune ``ckpt``: ``drop`` the given orders, or (None) those :func:`orders_to_drop` finds unused.
    Trains the pruned config for ``seeds`` seeds (the checkpoint's seed first) and, for every seed past
    the first, the unpruned config too, so that both sides have the same seeds. Returns the tables."""
    ckpt, out = Path(ckpt), Path(out)
    if seeds < 1:
        raise IrrepprobeError(f"--seeds must be at least 1, got {seeds}")
    config = Config.from_dict(load_checkpoint(ckpt)["config"])
    base_row, base_util, base_cap = _measure("full", config.train.seed, ckpt, out / "baseline", molecules)
    if drop is None:
        drop = orders_to_drop(base_util, threshold, hidden_points(base_cap))
        log(f"orders unused at every layer (ablation utilisation < {threshold:g}): "
            + (", ".join(f"l={l}" for l in drop) or "none"))
    rows, utils = [base_row], [base_util]
    if not drop:
        return {"drop": [], "runs": pd.DataFrame(rows), "utilisation": pd.concat(utils), "config": None}
    small = pruned_config(config, drop)
    for k in range(seeds):
        seed = config.train.seed + k
        small.train.seed = seed
        run = out / f"pruned-seed{seed}"
        row, util, _ = _measure("pruned", seed, _run(small, run, log), run, molecules)
        rows.append(row)
        utils.append(util)
        if k > 0:
            full = Config.from_dict(config.to_dict())
            full.train.seed = seed
            run = out / f"full-seed{seed}"
            row, util, _ = _measure("full", seed, _run(full, run, log), run, molecules)
            rows.append(row)
            utils.append(util)
    return {"drop": drop, "runs": pd.DataFrame(rows), "utilisation": pd.concat(utils, ignore_index=True),
            "config": small}
