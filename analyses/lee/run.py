"""Study 1 (Lee, Galkin, Miret): which irreps does a U0 model use?

Runs (or resumes) the U0 grid and the dipole-vector contrast with the experiment runner, retrains the
orders unused in every seed (if any), writes one full report (probes, latent maps per block) per L set
for seed 0, and the study summary reports/lee/README.md.

    OMP_NUM_THREADS=1 python analyses/lee/run.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, command, experiment, provenance, run_times  # noqa: E402

from irrepprobe.experiments import load_grid  # noqa: E402
from irrepprobe.experiments.grid import Grid, Run  # noqa: E402
from irrepprobe.fileio import save_csv, save_text  # noqa: E402
from irrepprobe.metrics import THRESHOLD  # noqa: E402
from irrepprobe.prune import orders_to_drop, pruned_config  # noqa: E402
from irrepprobe.report import make_report  # noqa: E402
from irrepprobe.report.document import Document  # noqa: E402
from irrepprobe.report.experiment import experiment_report  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = ROOT / "experiments"
REPORTS = ROOT / "reports" / "lee"
SIZES = ("QM9 subset of 2,000 molecules (1,600 train / 200 validation / 200 test, split seed 0), 8 epochs, "
         "batch 32, AdamW lr 1e-3, multiplicity 8 for every order, 3 layers, 6 A cutoff, 20 Bessel functions; "
         "utilisation on the 200 test molecules")


def pruned_grid(grid: Grid, util: pd.DataFrame) -> tuple[Grid, pd.DataFrame]:
    """For each configuration, the orders unused in every seed; a grid retraining those without them."""
    rows, runs = [], []
    for config_name, g in util.groupby("config", sort=False):
        per_seed = [set(orders_to_drop(s, THRESHOLD)) for _, s in g.groupby("seed")]
        drop = sorted(set.intersection(*per_seed)) if per_seed else []
        rows.append({"config": config_name, "unused in every seed": str(drop),
                     "unused per seed": "; ".join(str(sorted(s)) for s in per_seed)})
        for r in grid.runs:
            if r.config_name == config_name and drop:
                c = pruned_config(r.config, drop)
                runs.append(Run(f"{config_name}-pruned-ls={','.join(map(str, c.model.ls))}", r.seed, c))
    return Grid(grid.name + "-pruned", runs, grid.measure, grid.executor), pd.DataFrame(rows)


def model_reports(res: dict, runs: Path, out: Path, cmd: str) -> pd.DataFrame:
    """A full irrepprobe report for seed 0 of each configuration; returns the dipole probes of l=1."""
    rows = []
    for name in (res["runs"][res["runs"]["seed"] == 0]["run"] if len(res["runs"]) else []):
        cap = runs / name / "capture"
        dest = out / "models" / name.split("/")[0]
        if not (dest / "tables" / "probes_equivariant.csv").exists():
            print(f"report for {name}", flush=True)
            from irrepprobe.capture import load_capture
            from irrepprobe.metrics import hidden_points
            c = load_capture(cap)
            make_report(c, out=dest, ablation_molecules=None, map_points=None, map_layers=hidden_points(c),
                        device="cpu", command=cmd, log=lambda *a: None)
        path = dest / "tables" / "probes_equivariant.csv"
        if path.stat().st_size > 1:  # empty when the model has no 1o or 2e block
            rows.append(pd.read_csv(path).assign(config=name.split("/")[0]))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["target"])


def main() -> None:
    t0 = time.time()
    cmd = command()
    u0_grid, dip_grid = load_grid(HERE / "grid.yaml"), load_grid(HERE / "dipole.yaml")
    u0 = experiment(u0_grid, RUNS / "lee-u0")
    pgrid, unused = pruned_grid(u0_grid, u0["utilisation"])
    pruned = experiment(pgrid, RUNS / "lee-u0") if pgrid.runs else None
    dip = experiment(dip_grid, RUNS / "lee-dipole")
    if pruned is not None:  # one report over full and pruned runs, so the correlation spans both
        u0 = {k: pd.concat([u0[k], pruned[k]], ignore_index=True) if isinstance(u0[k], pd.DataFrame) else u0[k]
              for k in u0}
    experiment_report(u0, REPORTS / "u0", "Lee et al. study 1: U0, four L sets x 3 seeds", command=cmd)
    experiment_report(dip, REPORTS / "dipole", "Lee et al. study 1 contrast: dipole vector", command=cmd)
    save_csv(unused, REPORTS / "tables" / "unused_orders.csv")
    eq_u0 = model_reports(u0, RUNS / "lee-u0", REPORTS / "u0", cmd)
    eq_dip = model_reports(dip, RUNS / "lee-dipole", REPORTS / "dipole", cmd)
    write_summary(u0, dip, unused, eq_u0, eq_dip, cmd, time.time() - t0, u0_grid, dip_grid, pgrid)


def _mean_std(g: pd.Series) -> str:
    return f"{g.mean():.3f} ± {g.std():.3f}" if len(g) > 1 else f"{g.mean():.3f}"


def write_summary(u0, dip, unused, eq_u0, eq_dip, cmd, seconds, u0_grid, dip_grid, pgrid) -> None:
    tag = (lambda df: df.assign(config="dipole " + df["config"]))  # the two grids share config names
    runs = pd.concat([u0["runs"], tag(dip["runs"])], ignore_index=True)
    util = pd.concat([u0["utilisation"], tag(dip["utilisation"])], ignore_index=True)
    per_order = (util[util["point"] != "all"].groupby(["config", "l"])["utilisation"].agg(["mean", "max"])
                 .unstack("l").round(3))
    per_order.columns = [f"{s} util l={l}" for s, l in per_order.columns]
    joint = util[util["point"] == "all"].groupby(["config", "l"])["utilisation"].mean().unstack("l").round(3)
    joint.columns = [f"joint util l={l}" for l in joint.columns]
    table = (runs.groupby("config", sort=False)
             .agg(target=("target", "first"), ls=("ls", lambda s: str(s.iloc[0])), params=("params", "first"),
                  seeds=("seed", "size"), test_mae=("test_mae", _mean_std),
                  unused_blocks=("unused_blocks", "mean"), blocks=("blocks", "first"),
                  latent=("knn_r2_target", "mean"))
             .join(joint, on="config").reset_index())
    save_csv(table, REPORTS / "tables" / "study.csv")
    save_csv(per_order.reset_index(), REPORTS / "tables" / "utilisation_per_order.csv")
    dip1 = pd.concat([eq_u0.assign(model="U0"), eq_dip.assign(model="dipole_vec")])
    dip1 = dip1[dip1["target"].astype(str).str.startswith("dipole")]
    save_csv(dip1, REPORTS / "tables" / "dipole_probes.csv")
    corr = pd.read_csv(REPORTS / "u0" / "tables" / "correlation.csv")
    times = run_times(RUNS, [f"lee-u0/{r.name}" for r in u0_grid.runs + pgrid.runs]
                      + [f"lee-dipole/{r.name}" for r in dip_grid.runs])
    doc = Document("Study 1: which irreps does a U0 model use? (after Lee, Galkin, Miret)")
    doc.text("Produced by `analyses/lee/run.py` with the grids `analyses/lee/grid.yaml` and "
             "`analyses/lee/dipole.yaml`. Experiment reports: [U0 grid](u0/report.md), "
             "[dipole contrast](dipole/report.md); one full model report per L set (seed 0, probes, latent maps "
             "per block) under `u0/models/` and `dipole/models/`.")
    doc.heading("Per configuration")
    doc.text("Test MAE in eV (U0) and in Debye per component (dipole), mean ± std over seeds. Unused blocks: "
             f"ablation utilisation below {THRESHOLD:g} (zeroing the block raises the MAE by less than 5%), mean "
             "count per run out of `blocks`. Joint utilisation: every layer's order l zeroed at once (relative "
             "MAE increase, mean over seeds). Latent: kNN R2 of the target, mean over hidden blocks.")
    doc.table(table, "tables/study.csv")
    doc.heading("Orders unused in every seed, and the retraining without them")
    doc.table(unused, "tables/unused_orders.csv")
    doc.heading("Does the l=1 part of a U0 model carry the dipole?")
    doc.text("Equivariant probe of the dipole vector from each 1o block (R2 against zero, 5-fold, scalar weights), "
             "the same probe on the untrained model, and the difference (selectivity); seed 0.")
    doc.table(dip1[["model", "config", "point", "block", "r2", "r2_untrained", "selectivity"]],
              "tables/dipole_probes.csv")
    doc.heading("Latent structure against test error (all U0 runs)")
    doc.table(corr[["runs", "n", "rho", "ci_low", "ci_high"]])
    doc.bullets(list(corr["verdict"]))
    save_text(doc.markdown(REPORTS) + "\n" + provenance(cmd, times, seconds, SIZES), REPORTS / "README.md")
    print(f"-> {REPORTS / 'README.md'}")


if __name__ == "__main__":
    main()
