"""Studies III (issue 27): the 16,000-molecule runs, trained together: the [0,3,4] arm's n16000 runs
(analyses/lee/arm034.yaml, under experiments/lee-arm034) and seeds 3 and 4 of the headline pair
(analyses/lee/seeds16k.yaml, under experiments/lee-seeds16k). Two processes at a time; first seed 3 of the
pair and the arm (every comparison gains a seed), longest first so that neither core idles while the other
still has work, then seed 4. Each run resumes where it stopped (at its last finished epoch), also across
sessions: `--save-state` copies unfinished runs' checkpoints to analyses/lee/more16k-state/ (committed;
analyses/lee/carry.py) and the next invocation restores them. Reports come from analyses/lee/arm034.py and
analyses/seed_level.py (which read these directories and the committed per-run tables).

    OMP_NUM_THREADS=1 python analyses/lee/more16k.py [RUN ...] [--jobs N]   # RUN: e.g. n16000-ls=0,1,2,3,4/seed4
    python analyses/lee/more16k.py --save-state                            # any time, also while they train
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arm034 import EXTRA, REPORTS  # noqa: E402
from carry import restore, save  # noqa: E402

from irrepprobe.experiments import load_grid  # noqa: E402
from irrepprobe.experiments.executors import run_local  # noqa: E402
from irrepprobe.experiments.run import state  # noqa: E402

HERE = Path(__file__).resolve().parent
STATE = HERE / "more16k-state"
GRIDS = {"lee-arm034": HERE / "arm034.yaml", "lee-seeds16k": HERE / "seeds16k.yaml"}
# relative cost per run at 16k on this machine (an epoch of [0,3,4,5,6] took 325-330 s with two runs at a time)
COST = {(0, 3, 4, 5, 6): 3, (0, 1, 2, 3, 4): 2, (0, 3, 4): 1}


def main() -> None:
    ap = argparse.ArgumentParser(description="Train (resume) the 16k runs of both grids.")
    ap.add_argument("runs", nargs="*", help="only these runs, e.g. n16000-ls=0,1,2,3,4/seed4 (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--save-state", action="store_true",
                    help="only copy the unfinished runs' checkpoints to analyses/lee/more16k-state (committed)")
    args = ap.parse_args()
    table = REPORTS / "tables" / EXTRA[0]  # runs finished in earlier sessions
    done = set(map(tuple, pd.read_csv(table)[["grid", "run"]].to_numpy())) if table.exists() else set()
    todo, measure = [], None
    for sub, path in GRIDS.items():
        grid = load_grid(path)
        measure = measure or grid.measure
        assert grid.measure == measure, "the two grids measure alike"
        runs = ROOT / "experiments" / sub
        every = [r for r in grid.runs if r.config.data.train_size == 16000]
        finished = {r.name for r in every if (sub, r.name) in done}
        if args.save_state:
            save(runs, STATE / sub, [r.name for r in every], finished)
            continue
        for r in every:
            if r.name in finished:
                continue
            restore(runs, STATE / sub, r.name)
            if state(runs / r.name) != "done" and (not args.runs or r.name in args.runs):
                todo.append(replace(r, config_name=f"{sub}/{r.config_name}"))
    if args.save_state:
        return
    todo.sort(key=lambda r: (r.config.train.seed == 4, -COST[tuple(r.config.model.ls)]))
    print(f"{len(todo)} runs to do: {[r.name for r in todo]}", flush=True)
    failures = run_local(todo, ROOT / "experiments", measure, jobs=args.jobs)
    print("\n".join(failures) or "all done", flush=True)


if __name__ == "__main__":
    main()
