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
    per_block = util[(util["point"] != "all") & (util["intervention"] == "zero") & util["reachable"]]
    per_order = (per_block.groupby(["config", "l"])["scale_free"].agg(["mean", "max"])
                 .unstack("l").round(3))
    per_order.columns = [f"{s} util l={l}" for s, l in per_order.columns]
    joint = util[(util["point"] == "all") & util["intervention"].isin(["zero", "removed"])]
    joint = joint.groupby(["config", "intervention", "l"])["scale_free"].mean().unstack(["intervention", "l"])
    joint = joint.sort_index(axis=1, level=[1, 0])
    joint.columns = [f"{'zeroed' if i == 'zero' else 'removed'} l={l}" for i, l in joint.columns]
    joint = (100 * joint).round(1)
    latent = pd.concat([pd.read_csv(REPORTS / "u0" / "tables" / "runs.csv"),
                        pd.read_csv(REPORTS / "dipole" / "tables" / "runs.csv").assign(
                            config=lambda d: "dipole " + d["config"])])
    runs = runs.drop(columns=["latent"], errors="ignore").merge(latent[["run", "config", "latent"]],
                                                                 on=["run", "config"], how="left")
    table = (runs.groupby("config", sort=False)
             .agg(target=("target", "first"), ls=("ls", lambda s: str(s.iloc[0])), params=("params", "first"),
                  seeds=("seed", "size"), test_mae=("test_mae", _mean_std),
                  unused_blocks=("unused_blocks", "mean"), blocks=("blocks", "first"),
                  unreachable=("unreachable_blocks", "mean"), latent=("latent", "mean"))
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
             "reachable blocks whose scale-free utilisation (the share of what the model learned beyond the "
             "composition baseline that the ablation takes away) has a 95% interval entirely below "
             f"{THRESHOLD:.0%} under zero, mean and resample ablation; mean count per run out of `blocks` "
             "(reachable blocks: the embedding, each layer's update and stream); `unreachable`: blocks no output "
             "depends on by construction, in neither count. Zeroed l / removed l: the scale-free utilisation "
             "(%, mean over seeds) of every layer's order-l blocks zeroed at once, and of the order truly removed "
             "(spherical harmonics and every path through it switched off). Latent: kNN R2 of the target, "
             "mean over the same stream blocks in every configuration.")
    doc.table(table, "tables/study.csv")
    doc.heading("Orders unused in every seed, and the retraining without them")
    doc.table(unused, "tables/unused_orders.csv")
    doc.heading("Does the l=1 part of a U0 model carry the dipole?")
    doc.text("Equivariant probe of the dipole vector from each 1o block (R2 against zero, 5-fold, scalar weights), "
             "the same probe on 5 untrained initialisations (mean, sd), the difference (selectivity), whether R2 "
             "beats every initialisation, and the control task (dipoles shuffled among molecules of equal "
             "composition); seed 0.")
    dip1 = dip1.round(3)
    doc.table(dip1[["model", "config", "point", "block", "r2", "r2_untrained", "r2_untrained_sd", "selectivity",
                    "above_controls", "r2_control_task"]], "tables/dipole_probes.csv")
    doc.heading("Latent structure against test error (all U0 runs)")
    doc.text("Latent structure over the same stream blocks in every configuration; bootstrap over "
             "configurations (seeds of one configuration drawn together); leave-one-configuration-out: is a "
             "configuration's error predicted better by a line in latent structure than by the others' mean?")
    doc.table(corr[["runs", "n", "groups", "rho", "ci_low", "ci_high"]])
    loco = pd.read_csv(REPORTS / "u0" / "tables" / "leave_one_config_out.csv")
    from irrepprobe.metrics.correlation import loco_verdict
    doc.bullets(list(corr["verdict"]) + [loco_verdict(loco)])
    save_text(doc.markdown(REPORTS) + "\n" + provenance(cmd, times, seconds, SIZES), REPORTS / "README.md")
    print(f"-> {REPORTS / 'README.md'}")


if __name__ == "__main__":
    main()
