import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from irrepprobe.cli import main
from irrepprobe.errors import IrrepprobeError
from irrepprobe.experiments import load_grid, parse_grid, run_experiment
from irrepprobe.metrics import spearman_ci
from irrepprobe.metrics.correlation import verdict
from irrepprobe.report.experiment import experiment_report

SMOKE = {"data.subset": 200, "train.epochs": 2, "train.device": "cpu"}
MEASURE = {"ablation_molecules": 20}


def _grid(tmp_path, **extra):
    raw = {"name": "t", "base": "smoke", "set": SMOKE, "grid": {"model.ls": [[0, 1], [0, 2]]}, "seeds": 2,
           "measure": MEASURE, **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_grid_is_configs_times_values_times_seeds_seed_major():
    g = parse_grid({"base": "smoke", "configs": [{"name": "A"}, {"name": "B", "preset": "miller-l0"}],
                    "grid": {"data.target": ["mu", "gap"]}, "seeds": [3, 5]})
    assert len(g.runs) == 8
    assert [r.seed for r in g.runs] == [3] * 4 + [5] * 4
    assert g.runs[0].name == "A-target=mu/seed3"
    b = [r for r in g.runs if r.config_name == "B-target=gap"][0]
    assert b.config.model.ls == [0] and b.config.data.target == "gap" and b.config.train.seed == 3


@pytest.mark.parametrize("raw, match", [
    ({"bogus": 1}, "unknown grid key 'bogus'"),
    ({"seeds": 0}, "seeds"),
    ({"grid": {"model.ls": []}}, "grid: expected"),
    ({"grid": {"model.nope": [1]}}, "unknown config key 'model.nope'"),
    ({"configs": [{"name": "a"}, {"name": "a"}]}, "distinct name"),
    ({"executor": {"name": "pbs"}}, "executor"),
])
def test_bad_grids_say_what_is_wrong(raw, match):
    with pytest.raises(IrrepprobeError, match=match):
        parse_grid({"base": "smoke", **raw})


def test_spearman_finds_a_planted_monotone_relation_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    r = spearman_ci(x, np.exp(x) + 0.01 * rng.normal(size=40), n_boot=500)
    assert r["rho"] > 0.95 and r["ci_low"] > 0.8
    noise = spearman_ci(x, rng.normal(size=40), n_boot=500)
    assert noise["ci_low"] < 0 < noise["ci_high"]
    assert "includes 0" in verdict(noise)
    assert "too few runs" in verdict(spearman_ci(x[:5], x[:5] ** 3, n_boot=100))


def _planted_runs(within_slope: float, between: float, seed: int = 0) -> pd.DataFrame:
    """3 targets x 6 configurations x 3 seeds: latent and error each shifted by ``between`` times the
    target's index (a between-target artefact), and error = ``within_slope`` * latent + noise within."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(3):
        for c in range(6):
            base = rng.normal()
            for s in range(3):
                x = base + 0.1 * rng.normal()
                rows.append({"target": f"t{t}", "config": f"t{t}-c{c}", "seed": s,
                             "latent": x + between * t,
                             "test_mae": within_slope * x + 0.3 * rng.normal() + between * t})
    return pd.DataFrame(rows).assign(test_mae_relative=lambda d: d["test_mae"])


def test_a_planted_within_target_correlation_is_found_and_a_between_target_artefact_is_not():
    from irrepprobe.metrics.correlation import latent_vs_error, leave_one_config_out

    artefact = latent_vs_error(_planted_runs(0.0, 10.0), "latent", n_boot=500).set_index("runs")
    pooled = artefact.loc["pooled across targets (artefact-prone)"]
    assert pooled["rho"] > 0.5 and pooled["ci_low"] > 0  # what pooling over targets would have claimed
    inside = artefact.loc["within targets"]
    assert inside["ci_low"] < 0 < inside["ci_high"] and inside["groups"] == 18
    planted = latent_vs_error(_planted_runs(-1.0, 10.0), "latent", n_boot=500).set_index("runs")
    assert planted.loc["within targets", "ci_high"] < 0
    assert all(planted.loc[f"target t{t}", "ci_high"] < 0 for t in range(3))
    # a configuration's error is predicted better by the latent line than by the others' mean only when planted
    loco = leave_one_config_out(_planted_runs(-1.0, 10.0), "latent")
    assert len(loco) == 18 and loco["error_latent"].mean() < 0.6 * loco["error_mean"].mean()
    none = leave_one_config_out(_planted_runs(0.0, 10.0), "latent")
    assert none["error_latent"].mean() > 0.9 * none["error_mean"].mean()


def test_bootstrap_over_configurations_is_wider_than_over_runs_when_seeds_repeat_a_configuration():
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=6), 5) + 0.01 * rng.normal(size=30)  # 6 configurations x 5 near-equal seeds
    y = x + 0.8 * np.repeat(rng.normal(size=6), 5)
    runs = spearman_ci(x, y, n_boot=500)
    configs = spearman_ci(x, y, n_boot=500, groups=np.repeat(np.arange(6), 5))
    assert configs["groups"] == 6 and runs["groups"] == 30
    assert configs["ci_high"] - configs["ci_low"] > runs["ci_high"] - runs["ci_low"]


def test_grid_runs_a_rerun_does_no_work_and_the_report_has_the_correlation(tmp_path):
    grid = load_grid(_grid(tmp_path))
    logs = []
    res = run_experiment(grid, tmp_path / "out", log=logs.append)
    assert res["counts"] == {"done": 0, "partial": 0, "new": 4} and not res["failures"]
    assert len(res["runs"]) == 4
    run = tmp_path / "out" / "ls=0,2" / "seed1"
    for f in ("config.yaml", "best.pt", "capture/meta.json", "metrics/utilisation.csv", "metrics/knn.csv", "done.json"):
        assert (run / f).exists(), f
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["ls"] == [0, 2]
    stamp = (run / "done.json").stat().st_mtime_ns

    logs.clear()
    again = run_experiment(grid, tmp_path / "out", log=logs.append)
    assert again["counts"]["done"] == 4 and len(logs) == 1  # only the status line: no run touched
    assert (run / "done.json").stat().st_mtime_ns == stamp

    md = experiment_report(again, tmp_path / "out", "t")
    text = md.read_text()
    corr = pd.read_csv(tmp_path / "out" / "tables" / "correlation.csv")
    assert {"rho", "ci_low", "ci_high", "n"} <= set(corr.columns) and corr["n"].iloc[0] == 4
    assert "too few runs" in text and "figures/error_vs_latent.png" in text
    assert (tmp_path / "out" / "figures" / "error_vs_latent.png").stat().st_size > 5000
    summary = pd.read_csv(tmp_path / "out" / "tables" / "summary.csv")
    assert list(summary["seeds"]) == [2, 2]
    # two seeds per configuration: their spread beside the within-model intervals
    seeds = pd.read_csv(tmp_path / "out" / "tables" / "seeds.csv")
    assert set(seeds["config"]) == {"ls=0,1", "ls=0,2"} and "## Across seeds" in text
    util = res["utilisation"]
    one = util[(util["run"] == "ls=0,2/seed1") & (util["intervention"] == "zero") & (util["point"] == "all")]
    row = seeds[(seeds["config"] == "ls=0,2") & (seeds["point"] == "all")].iloc[0]
    # a 3-epoch smoke model may be no better than its composition fit: then no share, and no seed counted
    assert row["seed 1"] == pytest.approx(float(one["scale_free"].iloc[0]), nan_ok=True)
    finite = seeds[seeds["seeds"] == 2]
    assert (finite["mean_low"] <= finite["mean"]).all() and (finite["mean"] <= finite["mean_high"]).all()


def test_a_killed_experiment_resumes_where_it_stopped(tmp_path):
    path = _grid(tmp_path, set={**SMOKE, "train.epochs": 60}, grid={}, seeds=1)
    out = tmp_path / "out"
    run = out / "run" / "seed0"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "irrepprobe", "experiment", str(path), "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            metrics = run / "metrics.csv"
            if (run / "last.pt").exists() and metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (run / "done.json").exists(), "the run finished before it could be killed"
    epochs_before = len(pd.read_csv(run / "metrics.csv"))
    assert 2 <= epochs_before < 60
    logs = []
    res = run_experiment(load_grid(path), out, log=logs.append)
    assert res["counts"]["partial"] == 1
    assert any("resuming" in line for line in logs)
    history = pd.read_csv(run / "metrics.csv")
    assert list(history["epoch"]) == list(range(1, 61))  # nothing lost, nothing trained twice
    assert json.loads((run / "done.json").read_text())["seed"] == 0


def test_submitit_local_executor_runs_the_grid(tmp_path):
    pytest.importorskip("submitit")
    path = _grid(tmp_path, grid={}, seeds=1, executor={"name": "submitit", "cluster": "local", "timeout_min": 10})
    res = run_experiment(load_grid(path), tmp_path / "out", log=lambda *a: None)
    assert not res["failures"] and len(res["runs"]) == 1
    assert list((tmp_path / "out" / "submitit").iterdir())


def test_cli_experiment_lists_runs_and_rejects_bad_input(tmp_path, capsys):
    path = _grid(tmp_path)
    assert main(["experiment", str(path), "--out", str(tmp_path / "out"), "--list"]) == 0
    assert capsys.readouterr().out.count("new") == 4
    assert main(["experiment", str(tmp_path / "missing.yaml")]) == 2
    assert main(["experiment", str(path), "--jobs", "0"]) == 2
