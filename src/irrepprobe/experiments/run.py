"""One experiment run, start to finish and resumable: train (``last.pt`` resumes an interrupted
run), capture the test split, measure (utilisation, kNN latent structure, norms), then write
``done.json``. Each stage is skipped when its output is already there."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..capture import capture_checkpoint, load_capture
from ..config import Config
from ..fileio import save_csv, save_json
from ..metrics import INTERVENTIONS, hidden_points, invariant_targets, knn_scores, norms, utilisation
from ..models import build_model, num_parameters
from ..train import train

DONE = "done.json"


def state(out: Path) -> str:
    """"done", "partial" (interrupted: resumes from ``last.pt``) or "new"."""
    out = Path(out)
    if (out / DONE).exists():
        return "done"
    return "partial" if (out / "last.pt").exists() or (out / "capture" / "meta.json").exists() else "new"


def train_run(config: Config, out: Path, log=print, init=None) -> Path:
    """Train into ``out`` unless it finished already (``result.json``); resume from ``last.pt``.
    ``init(model)`` sets the weights of a fresh run (see :func:`irrepprobe.train.train`)."""
    out = Path(out)
    if not (out / "result.json").exists():
        resume = (out / "last.pt").exists()
        log(f"{out}: {'resuming' if resume else 'training'} ls={config.model.ls} seed={config.train.seed}")
        # on resume the checkpoint's config holds, but for the budget (epochs, stopping rule) the grid now sets
        train(config, out, resume=resume, progress=False, log=lambda *a: None, init=init)
    else:
        log(f"{out}: done, skipped")
    return out / "best.pt"


def measure(ckpt: Path, out: Path, molecules: int | None = 1000, subset: int | None = None,
            k: int = 10, device: str = "cpu") -> dict:
    """Capture ``ckpt`` into ``out/capture`` (kept if there) and write ``out/metrics/``: utilisation
    (every intervention, and order removal), kNN latent structure per block (5 subsamples), norms and ``summary.json`` (test error, parameters, scores)."""
    out = Path(out)
    cap = load_capture(out / "capture") if (out / "capture" / "meta.json").exists() else \
        capture_checkpoint(ckpt, subset=subset, out=out / "capture", device=device)
    config = Config.from_dict(cap.meta["config"])
    points = hidden_points(cap)
    util = utilisation(cap, ckpt, molecules=molecules, device=device, interventions=INTERVENTIONS)
    knn = knn_scores(cap, invariant_targets(cap), points=points, k=k)
    nrm = norms(cap)
    target = knn[knn["target"] != "squared error"]
    per_block = util[util["point"] != "all"].drop_duplicates(["point", "block"])
    blocks = per_block[per_block["reachable"]]
    y = cap.targets
    mae = float(np.abs(cap.errors).mean())
    summary = {
        "target": config.data.target, "ls": sorted(config.model.ls), "layers": config.model.layers,
        "seed": config.train.seed, "params": num_parameters(build_model(config)), "molecules": len(y),
        "test_mae": mae,
        # MAE over that of predicting the mean: comparable across targets
        "test_mae_relative": mae / float(np.abs(y - y.mean(0)).mean()),
        "knn_r2_target": float(target["knn_r2"].mean()),
        "knn_r2_error": float(knn[knn["target"] == "squared error"]["knn_r2"].mean()),
        # reachable blocks only: one unreachable by construction is neither used nor unused
        "unused_blocks": int((~blocks["used"]).sum()),
        "blocks": len(blocks),
        "unreachable_blocks": int((~per_block["reachable"]).sum()),
    }
    save_csv(util, out / "metrics" / "utilisation.csv")
    save_csv(knn, out / "metrics" / "knn.csv")
    save_csv(nrm, out / "metrics" / "norms.csv")
    save_json(summary, out / "metrics" / "summary.json")
    return {"summary": summary, "utilisation": util, "knn": knn, "capture": cap}


def run_one(config: Config, out, measure_opts: dict | None = None, log=print) -> dict:
    """Everything for one run in ``out``; returns its summary. A finished run returns at once."""
    import json

    out = Path(out)
    if (out / DONE).exists():
        return json.loads((out / DONE).read_text())
    t0 = time.time()
    ckpt = train_run(config, out, log)
    opts = measure_opts or {}
    if (out / "metrics" / "summary.json").exists():
        summary = json.loads((out / "metrics" / "summary.json").read_text())
    else:
        summary = measure(ckpt, out, molecules=opts.get("ablation_molecules", 1000),
                          subset=opts.get("capture_subset"), k=opts.get("knn_k", 10))["summary"]
    summary["seconds_this_invocation"] = round(time.time() - t0, 1)
    save_json(summary, out / DONE)
    return summary


def collect(out: Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """The finished runs among ``names`` under ``out``: one row per run, and the long tables."""
    import json

    rows, utils, knns = [], [], []
    for name in names:
        d = Path(out) / name
        if not (d / DONE).exists():
            continue
        config_name, seed = name.rsplit("/", 1)
        s = json.loads((d / DONE).read_text())
        rows.append({"config": config_name, "run": name, **s})
        tag = {"config": config_name, "run": name, "seed": s["seed"]}
        utils.append(pd.read_csv(d / "metrics" / "utilisation.csv").assign(**tag))
        knns.append(pd.read_csv(d / "metrics" / "knn.csv").assign(**tag))
    cat = (lambda x: pd.concat(x, ignore_index=True) if x else pd.DataFrame())
    return {"runs": pd.DataFrame(rows), "utilisation": cat(utils), "knn": cat(knns)}
