"""Prune and retrain: baseline capture and utilisation, the orders to drop, pruned runs from scratch
(same split, budget and seeds), their captures, and one comparison table. Every run directory is
resumable: finished runs (``result.json``) are skipped, interrupted ones resume from ``last.pt``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import Config
from ..errors import IrrepprobeError
from ..experiments.run import measure, train_run
from ..metrics import THRESHOLD, hidden_points
from ..train import load_checkpoint
from .policy import orders_to_drop, pruned_config


def _measure(variant: str, seed: int, ckpt: Path, out: Path, molecules: int | None):
    m = measure(ckpt, out, molecules=molecules)
    s, knn = m["summary"], m["knn"]
    target_knn = knn[knn["target"] != "squared error"].groupby("block")["knn_r2"].mean()
    row = {"variant": variant, "seed": seed, "ls": str(s["ls"]), "params": s["params"], "test_mae": s["test_mae"],
           "knn_r2_target": s["knn_r2_target"], "knn_r2_error": s["knn_r2_error"],
           **{f"knn_r2_target_{b}": v for b, v in target_knn.items()}}
    return row, m["utilisation"].assign(variant=variant, seed=seed), m["capture"]


def _warm_from(full_ckpt: Path):
    """An ``init`` for :func:`train_run`: the surviving weights of ``full_ckpt``."""
    def init(model):
        from ..train import model_from_checkpoint
        from ..adapters.irrepprobe.surgery import warm_start

        warm_start(model, model_from_checkpoint(full_ckpt))
    return init


def prune(ckpt, out, drop: list[int] | None = None, seeds: int = 1, threshold: float = THRESHOLD,
          molecules: int | None = 1000, warm: bool = False, recovery_steps: int | None = None, log=print) -> dict:
    """Prune ``ckpt``: ``drop`` the given orders, or (None) those :func:`orders_to_drop` finds unused.
    Trains the pruned config for ``seeds`` seeds (the checkpoint's seed first) and, for every seed past
    the first, the unpruned config too, so that both sides have the same seeds. With ``warm`` each seed
    also trains the pruned config warm-started from the full model of that seed (variant
    ``pruned-warm``), beside the cold start. With ``recovery_steps`` the orders found are those
    :func:`~irrepprobe.metrics.recovery` finds dispensable after that much fine-tuning with the order
    masked, instead of those unused in the trained checkpoint. Returns the tables."""
    ckpt, out = Path(ckpt), Path(out)
    if seeds < 1:
        raise IrrepprobeError(f"--seeds must be at least 1, got {seeds}")
    if not 0 < threshold < 1:
        raise IrrepprobeError(f"--threshold must be a fraction between 0 and 1, got {threshold:g}")
    config = Config.from_dict(load_checkpoint(ckpt)["config"])
    if drop is not None:
        pruned_config(config, drop)  # refuses l = 0 and orders the model lacks before any work is done
    base_row, base_util, base_cap = _measure("full", config.train.seed, ckpt, out / "baseline", molecules)
    if drop is None and recovery_steps:
        from ..metrics import dispensable, recovery_of

        rec = recovery_of(base_cap, molecules=molecules, steps=recovery_steps, threshold=threshold,
                          out=out / "baseline" / "recovery", log=log)
        drop = dispensable(rec)
        log(f"orders dispensable after {recovery_steps} fine-tuning steps with the order masked (recovery < "
            f"{threshold:g}): " + (", ".join(f"l={l}" for l in drop) or "none"))
    elif drop is None:
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
        full_ckpt = ckpt
        if k > 0:
            full = Config.from_dict(config.to_dict())
            full.train.seed = seed
            run = out / f"full-seed{seed}"
            full_ckpt = train_run(full, run, log)
            row, util, _ = _measure("full", seed, full_ckpt, run, molecules)
            rows.append(row)
            utils.append(util)
        variants = [("pruned", None)] + ([("pruned-warm", _warm_from(full_ckpt))] if warm else [])
        for variant, init in variants:
            run = out / f"{variant}-seed{seed}"
            row, util, _ = _measure(variant, seed, train_run(small, run, log, init=init), run, molecules)
            rows.append(row)
            utils.append(util)
    return {"drop": drop, "runs": pd.DataFrame(rows), "utilisation": pd.concat(utils, ignore_index=True),
            "config": small}
