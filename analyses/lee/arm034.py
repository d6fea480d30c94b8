"""Studies III (issue 27): does dropping l=1 and l=2 alone help a U0 model? Runs (or resumes) the [0,3,4] arm
``analyses/lee/arm034.yaml`` (the curve grid's settings at 1,000, 4,000 and 16,000 training molecules, 3
seeds) and collects seeds 3 and 4 of the headline pair at 16,000 (``analyses/lee/seeds16k.yaml``, trained by
analyses/lee/more16k.py). Compares each finished size with the curve grid's committed per-run tables
(reports/lee/n*/tables/runs.csv, plus those further seeds): [0,3,4] against [0,1,2,3,4] (drop l=1,2 alone),
[0,3,4,5,6] against [0,3,4] (add l=5,6 alone) and [0,3,4] against [0,1,2] (the same parameter count, other
orders), Welch's t over per-seed test MAEs and latent scores, Benjamini-Hochberg across the arm's
comparisons. Writes reports/lee/arm034.md, reports/lee/tables/arm034.csv and the per-run table of both grids,
reports/lee/tables/runs_studies3.csv, which analyses/seed_level.py reads.

    OMP_NUM_THREADS=1 python analyses/lee/arm034.py              # run or resume the arm, then report
    OMP_NUM_THREADS=1 python analyses/lee/arm034.py --report-only  # report on the runs finished so far
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, command, experiment  # noqa: E402
from curves import training_log  # noqa: E402
from seed_level import EXTRA, _runs, _table, by_family, with_calls  # noqa: E402

from irrepprobe.experiments import collect, load_grid  # noqa: E402
from irrepprobe.fileio import save_csv, save_text  # noqa: E402
from irrepprobe.metrics.paired import seed_difference, verdict  # noqa: E402
from irrepprobe.report.experiment import fixed_blocks, run_latent  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = ROOT / "experiments" / "lee-arm034"
SEEDS = ROOT / "experiments" / "lee-seeds16k"
REPORTS = ROOT / "reports" / "lee"
PAIRS = [("drop l=1,2 alone: [0,3,4] - [0,1,2,3,4]", "ls=0,3,4", "ls=0,1,2,3,4"),
         ("add l=5,6 alone: [0,3,4,5,6] - [0,3,4]", "ls=0,3,4,5,6", "ls=0,3,4"),
         # the same parameter count (mul 16 per order, three orders): which orders, not how many weights
         ("l=3,4 in place of l=1,2: [0,3,4] - [0,1,2]", "ls=0,3,4", "ls=0,1,2")]


def grid_runs(res: dict, out: Path, grid: str) -> pd.DataFrame:
    """One row per finished run: the summary, its training log and the latent score on the blocks the curve
    grid scored (the 0e streams every L set has)."""
    runs = res["runs"]
    if runs.empty:
        return runs
    runs = runs.assign(grid=grid, size=runs["config"].str.extract(r"^n(\d+)-")[0].astype(int))
    logs = pd.DataFrame([training_log(out / r) for r in runs["run"]], index=runs.index)
    knn = res["knn"]
    blocks = [b for b in fixed_blocks(res["utilisation"], knn) if b[1] == "0e"]
    return pd.concat([runs, logs], axis=1).drop(columns=[c for c in ("latent", "latent_sd") if c in runs]).merge(
        run_latent(knn, blocks), on="run")


def committed(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (finished here) with the committed rows of the runs whose directories are not on this machine:
    experiments/ is not committed, and a later session that finishes one more run must not drop the others."""
    path = REPORTS / "tables" / EXTRA[0]
    if not path.exists():
        return runs
    old = pd.read_csv(path)
    if runs.empty:
        return old
    here = pd.MultiIndex.from_frame(runs[["grid", "run"]])
    old = old[~pd.MultiIndex.from_frame(old[["grid", "run"]]).isin(here)]
    return pd.concat([old, runs[list(old.columns)]], ignore_index=True)


def compare(arm: pd.DataFrame) -> pd.DataFrame:
    rows = []
    study = _runs("lee")  # the curve grid's runs with the further seeds of its headline pair
    for size, g in arm.groupby("size"):
        if len(g) < 2:
            continue
        runs = pd.concat([study[study["size"] == size], g], ignore_index=True)
        by = by_family(runs)
        for name, a, b in PAIRS:
            for what in ("test_mae", "latent"):
                r = seed_difference(by[a][what].to_numpy(), by[b][what].to_numpy())
                rows.append({"size": size, "comparison": name, "measure": "test MAE (eV)" if what == "test_mae"
                             else "latent score (0e streams)", "params_a": int(by[a]["params"].iloc[0]),
                             "params_b": int(by[b]["params"].iloc[0]), **r,
                             "verdict": verdict(r["ci_low"], r["ci_high"], "negative" if what == "test_mae"
                                                else "positive")})
    t = pd.DataFrame(rows)
    return with_calls(t, "measure") if len(t) else t


def main() -> None:
    t0 = time.time()
    grid = load_grid(HERE / "arm034.yaml")
    arm = grid_runs(experiment(grid, RUNS), RUNS, "lee-arm034")
    seeds = load_grid(HERE / "seeds16k.yaml")
    more = grid_runs(collect(SEEDS, [r.name for r in seeds.runs]), SEEDS, EXTRA[1])
    both = committed(pd.concat([arm, more], ignore_index=True))
    arm = both[both["grid"] == "lee-arm034"]
    if len(both):  # written first: compare() reads the further seeds from it
        save_csv(both[["grid", "config", "run", "size", "seed", "params", "test_mae", "latent", "epochs", "cap",
                       "best_epoch", "stopped_early", "train_minutes"]], REPORTS / "tables" / EXTRA[0])
    t = compare(arm) if len(arm) else pd.DataFrame()
    lines = ["# Lee study: the [0,3,4] arm (drop l=1 and l=2, add nothing)", "",
             f"Made by `{command()}` with the grid `analyses/lee/arm034.yaml` (the curve grid's settings); "
             f"{len(arm)} of {len(grid.runs)} runs finished when it ran (here or, from the committed per-run table, in an "
             "earlier session); the other configurations are the curve "
             "grid's committed runs on the same test molecules. Welch's t over per-seed values (95%), `q` "
             "Benjamini-Hochberg across the arm's comparisons of one measure, `call` the verdict after it. "
             "Expected sign: lower test MAE, higher latent score.", ""]
    if len(both):
        per = both[["grid", "run", "params", "test_mae", "latent", "epochs", "best_epoch", "stopped_early",
                    "train_minutes"]]
        lines += ["Runs of the arm and the headline pair's further seeds at 16k (`analyses/lee/seeds16k.yaml`, "
                  "in the comparisons below and in `seed_level.md`); the 16k runs stop early after 10 epochs "
                  "without improvement, below the cap of 15 (`stopped_early` says whether that acted):", "",
                  *_table(per, ".4g")]
    if len(t):
        cols = ["size", "comparison", "measure", "params_a", "params_b", "per_seed_a", "per_seed_b", "diff",
                "ci_low", "ci_high", "relative", "p", "q", "verdict", "call"]
        lines += _table(t[cols])
        save_csv(t, REPORTS / "tables" / "arm034.csv")
    lines += [f"Wall time of this invocation: {(time.time() - t0) / 60:.1f} min.", ""]
    save_text("\n".join(lines), REPORTS / "arm034.md")
    print(f"-> {REPORTS / 'arm034.md'}")


if __name__ == "__main__":
    main()
