"""Studies IV (issue 40): Lee's headline pair at 1,000 training molecules trained until early stopping acts
(analyses/lee/converge.yaml, planned in analyses/lee/plan.yaml). Runs or resumes the grid (each run restarts
at its last finished epoch), then writes the per-run table reports/lee/tables/runs_converge.csv (test MAE,
latent score, epochs, cap, best epoch, whether early stopping acted), which analyses/seed_level.py reads.

    OMP_NUM_THREADS=1 python analyses/lee/converge.py [--jobs N]   # train (resume), then the table
    python analyses/lee/converge.py --report-only                   # the table of the runs finished so far
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
COLUMNS = ["grid", "config", "run", "size", "seed", "params", "test_mae", "latent", "epochs", "cap", "best_epoch",
           "stopped_early", "train_minutes"]


def main() -> None:
    ap = argparse.ArgumentParser(description="Train (resume) the converged headline pair at 1k, then its table.")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--report-only", action="store_true", help="only the table of the runs finished so far")
    args = ap.parse_args()
    grid = load_grid(GRID)
    if not args.report_only:
        todo = [r for r in grid.runs if state(RUNS / r.name) != "done"]
        print(f"{len(todo)} runs to do: {[r.name for r in todo]}", flush=True)
        failures = run_local(todo, RUNS, grid.measure, jobs=args.jobs)
        print("\n".join(failures) or "all done", flush=True)
    runs = grid_runs(collect(RUNS, [r.name for r in grid.runs]), RUNS, "lee-converge")
    if len(runs):
        save_csv(runs[COLUMNS], TABLE)
        print(f"{len(runs)} of {len(grid.runs)} runs -> {TABLE}")


if __name__ == "__main__":
    main()
