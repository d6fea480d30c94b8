"""Studies IV (issue 40): Lee's headline pair at 1,000 training molecules trained until early stopping acts
(analyses/lee/converge.yaml, planned in analyses/lee/plan.yaml). Runs or resumes the grid (each run restarts
at its last finished epoch), then writes the per-run table reports/lee/tables/runs_converge.csv (test MAE,
latent score, epochs, cap, best epoch, whether early stopping acted), which analyses/seed_level.py reads.

    OMP_NUM_THREADS=1 python analyses/lee/converge.py [RUN ...] [--jobs N]  # train (resume), then the table
    python analyses/lee/converge.py --report-only                          # the table of the runs finished so far

RUN: e.g. n1000-ls=0,3,4,5,6/seed0, to give each core its own runs. Seeds go in order, both arms of a seed
before the next seed, so that an interrupted grid leaves the arms as balanced as it can. The table keeps the
committed rows of runs whose directories are not on this machine (experiments/ is not committed), so a
session that finishes some runs adds them to those an earlier session finished. A run still training when a
session ends carries over the same way: `--save-state` copies each unfinished run's checkpoints (last.pt,
best.pt, the kept epochs, config.yaml, metrics.csv; about 5 MB a run) to analyses/lee/converge-state/, which
is committed, and the next invocation restores a run from there when this machine has no directory for it.
A finished run's saved state is deleted: its row in the table is what stays.

    python analyses/lee/converge.py --save-state   # before a session ends, with the runs stopped
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arm034 import grid_runs  # noqa: E402

from irrepprobe.experiments import collect, load_grid  # noqa: E402
from irrepprobe.experiments.executors import run_local  # noqa: E402
from irrepprobe.experiments.run import state  # noqa: E402
from irrepprobe.fileio import save_csv  # noqa: E402

GRID = Path(__file__).resolve().parent / "converge.yaml"
RUNS = ROOT / "experiments" / "lee-converge"
TABLE = ROOT / "reports" / "lee" / "tables" / "runs_converge.csv"
STATE = Path(__file__).resolve().parent / "converge-state"
KEEP = ("last.pt", "best.pt", "config.yaml", "metrics.csv", "epochs")
COLUMNS = ["grid", "config", "run", "size", "seed", "params", "test_mae", "latent", "epochs", "cap", "best_epoch",
           "stopped_early", "train_minutes"]


def restore(name: str) -> None:
    """A run saved by an earlier session into this machine's experiments/, unless it has the run already."""
    src, dst = STATE / name, RUNS / name
    if (src / "last.pt").exists() and state(dst) == "new":
        shutil.copytree(src, dst, dirs_exist_ok=True)
        print(f"{name}: restored from {src.relative_to(ROOT)}", flush=True)


def save_state(names: list[str], done: set[str]) -> None:
    """Copy each unfinished run's checkpoints into STATE; drop the saved state of finished runs."""
    for name in names:
        src, dst = RUNS / name, STATE / name
        if name in done or state(src) == "done":
            shutil.rmtree(dst, ignore_errors=True)
        elif (src / "last.pt").exists():
            tmp = dst.with_name(dst.name + ".tmp")  # the old state stays whole until the new one is
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for item in KEEP:
                if (src / item).is_dir():
                    shutil.copytree(src / item, tmp / item)
                elif (src / item).exists():
                    shutil.copy2(src / item, tmp / item)
            shutil.rmtree(dst, ignore_errors=True)
            tmp.rename(dst)
            print(f"{name}: saved to {dst.relative_to(ROOT)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="Train (resume) the converged headline pair at 1k, then its table.")
    ap.add_argument("runs", nargs="*", help="only these runs, e.g. n1000-ls=0,3,4,5,6/seed0 (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--report-only", action="store_true", help="only the table of the runs finished so far")
    ap.add_argument("--save-state", action="store_true",
                    help="only copy the unfinished runs' checkpoints to analyses/lee/converge-state (committed)")
    args = ap.parse_args()
    grid = load_grid(GRID)
    old = pd.read_csv(TABLE) if TABLE.exists() else pd.DataFrame(columns=COLUMNS)
    done = set(old["run"])
    if args.save_state:
        return save_state([r.name for r in grid.runs], done)
    if not args.report_only:
        for r in grid.runs:
            if r.name not in done:
                restore(r.name)
        todo = sorted((r for r in grid.runs if state(RUNS / r.name) != "done" and r.name not in done
                       and (not args.runs or r.name in args.runs)), key=lambda r: r.config.train.seed)
        print(f"{len(todo)} runs to do: {[r.name for r in todo]}", flush=True)
        failures = run_local(todo, RUNS, grid.measure, jobs=args.jobs)
        print("\n".join(failures) or "all done", flush=True)
    runs = grid_runs(collect(RUNS, [r.name for r in grid.runs]), RUNS, "lee-converge")
    if len(runs):
        runs = pd.concat([old[~old["run"].isin(runs["run"])], runs[COLUMNS]], ignore_index=True)
        save_csv(runs.sort_values(["seed", "config"])[COLUMNS], TABLE)
        print(f"{len(runs)} of {len(grid.runs)} runs -> {TABLE}")


if __name__ == "__main__":
    main()
