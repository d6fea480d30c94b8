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

    python analyses/lee/converge.py --save-state   # any time, also while the runs train (analyses/lee/carry.py)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arm034 import grid_runs  # noqa: E402
from carry import restore, save  # noqa: E402

from irrepprobe.experiments import collect, load_grid  # noqa: E402
from irrepprobe.experiments.executors import run_local  # noqa: E402
from irrepprobe.experiments.run import state  # noqa: E402
from irrepprobe.fileio import save_csv  # noqa: E402

GRID = Path(__file__).resolve().parent / "converge.yaml"
RUNS = ROOT / "experiments" / "lee-converge"
TABLE = ROOT / "reports" / "lee" / "tables" / "runs_converge.csv"
STATE = Path(__file__).resolve().parent / "converge-state"
COLUMNS = ["grid", "config", "run", "size", "seed", "params", "test_mae", "latent", "epochs", "cap", "best_epoch",
           "stopped_early", "train_minutes"]


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
        return save(RUNS, STATE, [r.name for r in grid.runs], done)
    if not args.report_only:
        for r in grid.runs:
            if r.name not in done:
                restore(RUNS, STATE, r.name)
        todo = sorted((r for r in grid.runs if state(RUNS / r.name) != "done" and r.name not in done
                       and (not args.runs or r.name in args.runs)), key=lambda r: r.config.train.seed)
        print(f"{len(todo)} runs to do: {[r.name for r in todo]}", flush=True)
        # one run at a time writes the table after each, so that a finished run's row is there to commit
        batches = [todo] if args.jobs > 1 else [[r] for r in todo]
        failures = []
        for batch in batches:
            failures += run_local(batch, RUNS, grid.measure, jobs=args.jobs)
            write_table(grid, old)
        print("\n".join(failures) or "all done", flush=True)
    if args.report_only or not todo:  # else the last batch wrote it
        write_table(grid, old)


def write_table(grid, old: pd.DataFrame) -> None:
    """The committed rows with those of the runs finished on this machine."""
    runs = grid_runs(collect(RUNS, [r.name for r in grid.runs]), RUNS, "lee-converge")
    if len(runs):
        runs = pd.concat([old[~old["run"].isin(runs["run"])], runs[COLUMNS]], ignore_index=True)
        save_csv(runs.sort_values(["seed", "config"])[COLUMNS], TABLE)
        print(f"{len(runs)} of {len(grid.runs)} runs -> {TABLE}", flush=True)


if __name__ == "__main__":
    main()
