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
# what both study reports say under their title about where their calls are (issue 40)
SEED_LEVEL = ("The calls of this report are the planned seed-level verdicts at its head (Welch's t over per-seed "
              "test MAEs, Fieller's interval for relative changes, Benjamini-Hochberg within each claim's family as "
              "the study's plan.yaml states it; written by `python analyses/seed_level.py` at the end of this "
              "script, with their sensitivity in [seed_level.md](seed_level.md)); the sections further down that "
              "rest on a molecule bootstrap with the seeds fixed (about 79% coverage at nominal 95% with 3 seeds) "
              "describe, and call nothing.")


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
    """Seconds of training (summed over the runs' epochs) and of measuring (last checkpoint to done) over
    the finished runs. A first-start-to-last-finish span would count the hours between sessions."""
    train = measure = 0.0
    for name in names:
        d = Path(out) / name
        if (d / "done.json").exists():
            train += float(pd.read_csv(d / "metrics.csv")["seconds"].sum())
            measure += (d / "done.json").stat().st_mtime - (d / "last.pt").stat().st_mtime
    return {"train_seconds": train, "measure_seconds": measure}


def provenance(cmd: str, times: dict, report_seconds: float, sizes: str, jobs: int = 1) -> str:
    """``jobs``: how many runs the grid's executor trained side by side (wall time is the summed time over it)."""
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    train, measure = times["train_seconds"], times["measure_seconds"]
    side = f"{jobs} runs side by side" if jobs > 1 else "one run at a time"
    versions = ", ".join(f"{p} {version(p)}" for p in ("torch", "e3nn", "torch_geometric", "scikit-learn",
                                                       "umap-learn", "qm9pack"))
    return "\n".join([
        "## How this was made", "",
        f"- Command: `{cmd}` (from the repository root; reruns skip finished runs and resume interrupted ones)",
        f"- Sizes: {sizes}",
        f"- Hardware: {os.cpu_count()} CPU cores ({cpu}), GPU: {gpu}; runs with OMP_NUM_THREADS=1, {side}",
        f"- Compute: training {train / 3600:.1f} h and measuring {measure / 3600:.1f} h summed over the finished "
        f"runs, so about {(train + measure) / 3600 / jobs:.1f} h of wall time with {side}; this report "
        f"{report_seconds / 60:.0f} min",
        f"- Software: Python {platform.python_version()}, {versions}, irrepprobe {git_commit()}",
        "",
    ])
