"""What every study report states: the command, the hardware, the wall time, the software versions,
and the sizes. Shared by the study scripts in this folder."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def experiment(grid, out):
    """Run (resume) the grid, or with --report-only just collect the runs that finished."""
    from irrepprobe.experiments import collect, run_experiment

    if "--report-only" in sys.argv:
        return {**collect(out, [r.name for r in grid.runs]), "counts": {}, "failures": []}
    return run_experiment(grid, out)


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() + (" (with uncommitted changes in src/)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def run_times(out: Path, names: list[str]) -> dict:
    """Training seconds summed over the runs' epochs, and first start to last finish."""
    train, starts, ends = 0.0, [], []
    for name in names:
        d = Path(out) / name
        if (d / "metrics.csv").exists():
            train += float(pd.read_csv(d / "metrics.csv")["seconds"].sum())
        if (d / "config.yaml").exists():
            starts.append((d / "config.yaml").stat().st_mtime)
        if (d / "done.json").exists():
            ends.append((d / "done.json").stat().st_mtime)
    span = (max(ends) - min(starts)) if starts and ends else float("nan")
    return {"train_seconds": train, "elapsed_seconds": span}


def provenance(cmd: str, times: dict, report_seconds: float, sizes: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    versions = ", ".join(f"{p} {version(p)}" for p in ("torch", "e3nn", "torch_geometric", "scikit-learn",
                                                       "umap-learn", "qm9pack"))
    return "\n".join([
        "## How this was made", "",
        f"- Command: `{cmd}` (from the repository root; reruns skip finished runs and resume interrupted ones)",
        f"- Sizes: {sizes}",
        f"- Hardware: {os.cpu_count()} CPU cores ({cpu}), GPU: {gpu}; runs with OMP_NUM_THREADS=1, "
        "two experiments side by side",
        f"- Wall time: training {times['train_seconds'] / 60:.1f} min summed over runs; first run start to last "
        f"run finish {times['elapsed_seconds'] / 60:.1f} min (other work shared the machine); "
        f"this report {report_seconds / 60:.1f} min",
        f"- Software: Python {platform.python_version()}, {versions}, irrepprobe {git_commit()}",
        "",
    ])
