"""The training loop: standardised targets, AdamW, ReduceLROnPlateau, early stopping on validation
MAE, CSV + TensorBoard logs, atomic last/best checkpoints every epoch, exact resume, DDP."""
from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data.distributed import DistributedSampler

from ..config import Config
from ..data import get_target, load_qm9, loader, make_split, radius_graph, target_values
from ..data.structures import atoms_of
from ..errors import IrrepprobeError
from ..fileio import save_json, save_text
from ..models import build_model, fit_output_stats
from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .stopping import EarlyStop

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_mae", "val_mae", "seconds"]


def prepare_data(config: Config):
    """QM9, the target values [molecules, dim] and the seeded split of this config."""
    qm9 = load_qm9(config.data.cache_dir)
    y = target_values(qm9, config.data.target)
    split = make_split(len(qm9), tuple(config.data.split), config.data.split_seed, config.data.subset,
                       config.data.train_size)
    return qm9, y, split


def _avg_neighbors(qm9, indices: torch.Tensor, cutoff: float, limit: int = 2000) -> float:
    idx = indices[:limit]
    pos, batch = [], []
    for k, i in enumerate(idx.tolist()):
        a, b = int(qm9.ptr[i]), int(qm9.ptr[i + 1])
        pos.append(qm9.pos[a:b])
        batch.append(torch.full((b - a,), k))
    pos, batch = torch.cat(pos), torch.cat(batch)
    return round(radius_graph(pos, batch, cutoff).shape[1] / pos.shape[0], 3)


@torch.no_grad()
def predict(model, qm9, y, indices, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and targets (float64, target units) over ``indices``, in order."""
    was_training = model.training
    model.eval()
    preds, trues = [], []
    for batch in loader(qm9, y, indices, batch_size):
        batch = batch.to(device)
        preds.append(model(batch).double().cpu())
        trues.append(batch.y.double().cpu())
    model.train(was_training)
    return torch.cat(preds), torch.cat(trues)


def _mae(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float((pred - true).abs().mean())


def _out_dir_state(out: Path, resume: bool) -> Path | None:
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise IrrepprobeError(f"--resume: no checkpoint to resume in {out} (expected {last})")
        return last
    if last.exists() or (out / "best.pt").exists():
        raise IrrepprobeError(f"{out} already holds a training run; pass --resume or choose another --out")
    return None


def train(config: Config | None, out: str | Path, resume: bool = False, progress: bool = True,
          log=print, init=None) -> dict[str, Any]:
    """Train ``config`` into ``out`` (``last.pt``, ``best.pt``, ``metrics.csv``, ``config.yaml``,
    ``tb/``). With ``resume`` the config and state come from ``out/last.pt``. ``init(model)``, if given,
    sets a fresh model's weights (a warm start) before the first epoch. Returns final metrics."""
    out = Path(out)
    last_path = _out_dir_state(out, resume)
    state = load_checkpoint(last_path) if last_path else None
    if state is not None:
        saved = Config.from_dict(state["config"])
        if config is not None:  # only the training budget may change on resume
            for key in ("epochs", "max_steps", "early_stop", "early_stop_delta", "device"):
                setattr(saved.train, key, getattr(config.train, key))
        config = saved.validate()
    if config is None:
        raise IrrepprobeError("no config: give a CONFIG file or --preset")
    config.validate()
    t = config.train

    device = distributed.resolve_device(t.device)
    is_dist = distributed.setup(device)
    rank, _, world_size = distributed.world()
    main = rank == 0
    try:
        return _train(config, out, state, device, is_dist, rank, world_size, main, progress, log, init)
    finally:
        distributed.teardown()


def kept(out: Path, epoch: int) -> Path:
    """Where ``train.keep_epochs`` keeps the checkpoint of ``epoch`` (0: before training)."""
    return Path(out) / "epochs" / f"epoch{epoch:04d}.pt"


def _train(config, out, state, device, is_dist, rank, world_size, main, progress, log, init=None):
    t = config.train
    qm9, y, split = prepare_data(config)
    if state is not None:
        split = {k: v.clone() for k, v in state["split"].items()}
    if config.model.avg_neighbors is None:
        config.model.avg_neighbors = _avg_neighbors(qm9, split["train"], config.model.cutoff)

    torch.manual_seed(t.seed)
    model = build_model(config)
    train_idx = split["train"]
    atoms = atoms_of(qm9.ptr, train_idx)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(qm9.n_atoms[train_idx], 0)])
    fit_output_stats(model, qm9.species[atoms], ptr, y[train_idx])
    if init is not None and state is None:
        init(model)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr)
    start_epoch, best_val, best_epoch, history = 0, math.inf, -1, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_val = state["epoch"] + 1, state["best_val"]
        best_epoch, history = state["best_epoch"], list(state["history"])
    # counted again from the history: a run resumed under a changed stopping rule counts by the new one
    stopper = EarlyStop.replay(t.early_stop, t.early_stop_delta, [row["val_mae"] for row in history])
    if stopper.stopped_at is not None and stopper.stopped_at < len(history) and main:
        log(f"the stopping rule stops this run at epoch {stopper.stopped_at}; it has trained to {len(history)}")

    net = model
    if is_dist:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        import yaml

        save_text(yaml.safe_dump(config.to_dict(), sort_keys=False), out / "config.yaml")
        log(model.summary())
        log(f"data: target={config.data.target} ({get_target(config.data.target).unit}) "
            f"train={len(split['train'])} val={len(split['val'])} test={len(split['test'])} "
            f"device={device} processes={world_size}")
    writer = _tensorboard(out) if main else None

    per_rank_batch = max(1, math.ceil(t.batch_size / world_size))
    sampler = DistributedSampler(range(len(train_idx)), num_replicas=world_size, rank=rank,
                                 shuffle=True, seed=t.seed)
    train_loader = loader(qm9, y, train_idx, per_rank_batch, sampler=sampler)
    scale = model.scale.to(device)

    def content_of(epoch, row):
        return dict(config=config.to_dict(), model=model.state_dict(), optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), epoch=epoch, best_val=best_val, best_epoch=best_epoch,
                    bad_epochs=stopper.bad, history=history, split=split, metrics=row)

    if main and 0 in t.keep_epochs and state is None:
        save_checkpoint(kept(out, 0), **content_of(-1, {}))
    epoch = start_epoch - 1
    for epoch in range(start_epoch, t.epochs):
        if stopper.stop:
            break
        sampler.set_epoch(epoch)
        net.train()
        t0, loss_sum, abs_sum, count, steps = time.time(), 0.0, 0.0, 0, 0
        bar = _progress(train_loader, f"epoch {epoch + 1}/{t.epochs}", progress and main, t.max_steps)
        for batch in bar:
            batch = batch.to(device)
            pred = net(batch)
            loss = (((pred - batch.y) / scale) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            n = batch.y.shape[0]
            loss_sum += loss.item() * n
            abs_sum += float((pred.detach() - batch.y).abs().mean()) * n
            count += n
            steps += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / count:.4f}")
            if t.max_steps and steps >= t.max_steps:
                break
        if hasattr(bar, "close"):
            bar.close()
        val_mae = _mae(*predict(model, qm9, y, split["val"], t.eval_batch_size, device))
        scheduler.step(val_mae)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / count,
               "train_mae": abs_sum / count, "val_mae": val_mae, "seconds": time.time() - t0}
        history.append(row)
        stopper.step(val_mae)
        improved = val_mae < best_val
        if improved:
            best_val, best_epoch = val_mae, epoch
        if main:
            log(f"epoch {epoch + 1:>3}  loss {row['train_loss']:.4f}  train MAE {row['train_mae']:.4f}  "
                f"val MAE {val_mae:.4f}  lr {row['lr']:.2e}  {row['seconds']:.1f}s" + ("  *" if improved else ""))
            if writer is not None:
                for k in ("train_loss", "train_mae", "val_mae", "lr"):
                    writer.add_scalar(k, row[k], epoch)
                writer.flush()
            content = content_of(epoch, row)
            if epoch + 1 in t.keep_epochs:
                save_checkpoint(kept(out, epoch + 1), **content)
            # best first: a kill between the two writes leaves a last.pt no newer than best.pt
            if improved:
                save_checkpoint(out / "best.pt", **content)
            save_checkpoint(out / "last.pt", **content)
            _write_metrics_csv(out / "metrics.csv", history)
    if writer is not None:
        writer.close()

    result: dict[str, Any] = {"epochs_run": len(history), "best_epoch": best_epoch + 1, "val_mae": best_val,
                              "stopped_at": stopper.stopped_at,
                              "unit": get_target(config.data.target).unit}
    if main and (out / "best.pt").exists():
        best = load_checkpoint(out / "best.pt")
        model.load_state_dict(best["model"])
        for name in ("train", "val", "test"):
            result[f"{name}_mae"] = _mae(*predict(model, qm9, y, split[name], t.eval_batch_size, device))
        best["metrics"] = {**best["metrics"], **{k: v for k, v in result.items() if k.endswith("_mae")}}
        save_checkpoint(out / "best.pt", **{k: v for k, v in best.items() if k not in ("format", "format_version", "versions")})
        save_json(result, out / "result.json")
        log(f"best epoch {best_epoch + 1}: MAE train {result['train_mae']:.4f}  val {result['val_mae']:.4f}  "
            f"test {result['test_mae']:.4f} {result['unit']}  -> {out / 'best.pt'}")
    return result


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    w.writeheader()
    w.writerows(history)
    save_text(buf.getvalue(), path)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(str(out / "tb"))


def _progress(iterable, desc: str, enabled: bool, total_cap: int | None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    total = len(iterable) if total_cap is None else min(len(iterable), total_cap)
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr, dynamic_ncols=True)
