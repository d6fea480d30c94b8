"""Learning curves for the study scripts: runs named ``n<train size>-<config>/seed<k>`` (grids whose
configs set ``data.train_size``), every run captured on the same test molecules. Test error per size
with intervals over molecules and seeds, paired differences between configurations at each size,
utilisation per size and per kept epoch, and their figures."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from irrepprobe.capture import load_capture  # noqa: E402
from irrepprobe.fileio import save_csv  # noqa: E402
from irrepprobe.metrics import THRESHOLD  # noqa: E402
from irrepprobe.metrics.paired import mae_interval, paired_difference, verdict  # noqa: E402
from irrepprobe.report import figures as F  # noqa: E402

N_BOOT = 2000


def split_name(config: str) -> tuple[int, str]:
    """``n4000-ls=0,1,2`` -> (4000, ``ls=0,1,2``)."""
    m = re.fullmatch(r"n(\d+)-(.+)", config)
    if not m:
        raise ValueError(f"run config {config!r} is not named n<size>-<config>")
    return int(m.group(1)), m.group(2)


def with_size(runs: pd.DataFrame) -> pd.DataFrame:
    parts = runs["config"].map(split_name)
    return runs.assign(size=parts.map(lambda p: p[0]), family=parts.map(lambda p: p[1]))


def training_log(run_dir: Path) -> dict:
    """Epochs trained, the best epoch and whether early stopping ended the run before its cap."""
    import yaml

    result = json.loads((run_dir / "result.json").read_text())
    cap = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["epochs"]
    minutes = float(pd.read_csv(run_dir / "metrics.csv")["seconds"].sum()) / 60
    return {"epochs": int(result["epochs_run"]), "best_epoch": int(result["best_epoch"]), "cap": int(cap),
            "stopped_early": int(result["epochs_run"]) < int(cap), "train_minutes": minutes}


def abs_errors(runs_dir: Path, runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per configuration, absolute test errors [seeds, molecules] (summed over output components), the
    molecules in one order for every configuration. Refuses runs whose test molecules differ."""
    out, order = {}, None
    for config, g in runs.groupby("config", sort=False):
        rows = []
        for run in g.sort_values("seed")["run"]:
            cap = load_capture(runs_dir / run / "capture")
            idx = cap.arrays["index"]
            err = np.abs(cap.errors).reshape(len(idx), -1).mean(1)
            if order is None:
                order = np.sort(idx)
            if not np.array_equal(np.sort(idx), order):
                raise ValueError(f"{run} was tested on other molecules than the first run")
            rows.append(err[np.argsort(idx)])
        out[config] = np.stack(rows)
    return out


def curve_table(runs: pd.DataFrame, errors: dict, runs_dir: Path, family_cols: list[str]) -> pd.DataFrame:
    """One row per configuration: size, family, seeds, test MAE with its interval, epochs trained."""
    rows = []
    for config, g in runs.groupby("config", sort=False):
        logs = [training_log(runs_dir / r) for r in g["run"]]
        ci = mae_interval(errors[config], n_boot=N_BOOT)
        rows.append({"config": config, "size": int(g["size"].iloc[0]),
                     **{c: str(g[c].iloc[0]) for c in family_cols}, "params": int(g["params"].iloc[0]),
                     "seeds": len(g), "test_mae": ci["mae"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
                     "seed_sd": float(g["test_mae"].std()) if len(g) > 1 else np.nan,
                     "epochs": "/".join(str(x["epochs"]) for x in logs),
                     "best_epoch": "/".join(str(x["best_epoch"]) for x in logs),
                     "stopped_early": sum(x["stopped_early"] for x in logs),
                     "train_minutes": round(sum(x["train_minutes"] for x in logs), 1)})
    return pd.DataFrame(rows).sort_values(family_cols + ["size"]).reset_index(drop=True)


def paired_table(runs: pd.DataFrame, errors: dict, pairs: list[tuple], by: list[str]) -> pd.DataFrame:
    """For each ``(label, a, b, expect)`` and each group of ``by`` (e.g. size, target): a minus b in test
    MAE on the same molecules, the paired interval, and the verdict on a predicted sign ``expect``."""
    rows = []
    for keys, g in runs.groupby(by, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        fam = dict(zip(g["family"], g["config"]))
        for label, a, b, expect in pairs:
            if a not in fam or b not in fam:
                continue
            r = paired_difference(errors[fam[a]], errors[fam[b]], n_boot=N_BOOT)
            rows.append({**dict(zip(by, keys)), "comparison": label, "a": a, "b": b, **r,
                         "verdict": verdict(r["ci_low"], r["ci_high"], expect) if expect else ""})
    return pd.DataFrame(rows)


def curve_figure(table: pd.DataFrame, family: str, out: Path, name: str, title: str, ylabel: str,
                 panel: str | None = None):
    """Test MAE against training size, one line per ``family`` value (one panel per ``panel`` value),
    intervals as error bars, both axes logarithmic."""
    keys = list(dict.fromkeys(table[panel])) if panel else [None]
    fig, axes = panels(len(keys), 3, 4.8, 3.6)
    for ax, p in zip(axes, keys):
        t = table if p is None else table[table[panel] == p]
        for k, (fam, g) in enumerate(t.groupby(family, sort=False)):
            g = g.sort_values("size")
            x = g["size"] * (1 + 0.03 * (k - 1.5))  # a small offset so that the bars do not overlap
            ax.errorbar(x, g["test_mae"], yerr=[g["test_mae"] - g["ci_low"], g["ci_high"] - g["test_mae"]],
                        fmt="o-", ms=4, capsize=2, label=fam)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training molecules")
        ax.set_ylabel(ylabel)
        if p is not None:
            ax.set_title(str(p), fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return F.save(fig, out / "figures", name)


def joint_utilisation(util: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, order l and intervention (every layer at once, and the order removed): the
    scale-free utilisation per seed with its interval, and how many seeds have it used / unused."""
    j = util[util["point"] == "all"]
    rows = []
    for (config, l, inter), g in j.groupby(["config", "l", "intervention"], sort=False):
        rows.append({"config": config, "l": int(l), "intervention": inter, "seeds": len(g),
                     "utilisation": float(g["scale_free"].mean()),
                     "per_seed": " / ".join(f"{100 * v:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]" for v, lo, hi in
                                            zip(g["scale_free"], g["scale_free_low"], g["scale_free_high"])),
                     "used_seeds": int(g["used"].sum()), "unused_seeds": int((~g["used"].astype(bool)).sum()),
                     # the seeds' range, and the outermost ends of their intervals
                     "low": float(g["scale_free"].min()), "high": float(g["scale_free"].max()),
                     "low_min": float(g["scale_free_low"].min()), "high_max": float(g["scale_free_high"].max())})
    return pd.DataFrame(rows)


def utilisation_figure(joint: pd.DataFrame, out: Path, name: str, title: str, panel: str = "family",
                        line: str = "l"):
    """Joint utilisation (zeroed at every layer) against training size, one panel per ``panel`` value
    and one line per ``line`` value, mean over seeds with the seeds' range."""
    z = joint[joint["intervention"] == "zero"]
    keys = list(dict.fromkeys(z[panel]))
    fig, axes = panels(len(keys), 4, 4.2, 3.4)
    for ax, key in zip(axes, keys):
        for value, g in z[z[panel] == key].groupby(line):
            g = g.sort_values("size")
            ax.plot(g["size"], 100 * g["utilisation"], "o-", ms=4, label=f"{line}={value}")
            ax.fill_between(g["size"], 100 * g["low"], 100 * g["high"], alpha=0.2)
        ax.set_xscale("log")
        ax.axhline(5, color="grey", lw=0.8, ls=":")
        ax.set_title(str(key), fontsize=10)
        ax.set_xlabel("training molecules")
        ax.set_ylabel("% of what was learned beyond composition", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return F.save(fig, out / "figures", name)


def dynamics_figure(table: pd.DataFrame, out: Path, name: str, title: str, ylim=(-100.0, 500.0)):
    """Utilisation of each order (mean over its reachable hidden blocks) against the epoch, one panel
    per configuration. Early epochs, where the model has learned little beyond composition, give shares of
    thousands of percent; those points are drawn as triangles on the edge of ``ylim`` so that they do not
    flatten the rest."""
    configs = list(dict.fromkeys(table["config"]))
    fig, axes = panels(len(configs), 4, 4.0, 3.0)
    lo, hi = ylim
    for ax, config in zip(axes, configs):
        g = table[(table["config"] == config) & table["reachable"]]
        for l, gl in g.groupby("l"):
            m = gl.groupby("epoch")["utilisation"].mean()
            x, y = np.maximum(m.index, 0.5), 100 * m.values
            line, = ax.plot(x, np.clip(y, lo, hi), "o-", ms=3, label=f"l={l}")
            for edge, marker, off in ((hi, "^", y > hi), (lo, "v", y < lo)):
                if off.any():
                    ax.plot(x[off], np.full(off.sum(), edge), marker, ms=7, color=line.get_color())
        ax.axhline(100 * THRESHOLD, color="grey", ls=":", lw=0.8)
        ax.set_ylim(lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))
        ax.set_xscale("log")
        ax.set_title(config, fontsize=8)
        ax.set_xlabel("epoch (0 drawn at 0.5)", fontsize=8)
        ax.set_ylabel("utilisation, %", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return F.save(fig, out / "figures", name)


def dynamics_table(runs: pd.DataFrame, runs_dir: Path, out: Path) -> pd.DataFrame:
    """Utilisation per block over the kept epochs of each run in ``runs`` (resumable, under
    ``out/dynamics/<config>/``)."""
    from irrepprobe.study.dynamics import dynamics

    tables = []
    for r in runs.itertuples():
        res = dynamics(runs_dir / r.run, out=out / "dynamics" / r.config, subset=500, molecules=200, device="cpu",
                       log=lambda *a: None)
        tables.append(res["table"].assign(config=r.config, size=r.size, family=r.family))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def dynamics_section(doc, runs: pd.DataFrame, runs_dir: Path, out: Path, which: str) -> None:
    """The report's section on utilisation over training for ``runs`` (``which`` names them, e.g. "seed
    0"): figure and table, nothing when no run kept checkpoints."""
    dyn = dynamics_table(runs, runs_dir, out)
    if not len(dyn):
        return
    doc.heading(f"Utilisation over training ({which})")
    doc.text("Scale-free utilisation under zeroing of each order's reachable hidden blocks (mean over the blocks) at "
             "the kept checkpoints, 500 test molecules, utilisation on 200; per-block tables and probe selectivity "
             "per epoch under `dynamics/`. In the first epochs the model has learned little beyond composition, the "
             "denominator of the scale-free share, so the share swings (below 0 or far above 100%) until it has.")
    doc.figure(dynamics_figure(dyn, out, "utilisation_vs_epoch", "utilisation of each order against the epoch "
                               "(triangles: off the scale, beyond -100% or 500%; dotted: 5%)"),
               "Utilisation against the epoch")
    save(dyn, out, "dynamics")


def latent_by_size(res: dict, runs: pd.DataFrame, out: Path, title: str, command: str) -> pd.DataFrame:
    """One experiment report per training size (``out/n<size>/``: latent structure against test error
    within that size, bootstrap over configurations, leave-one-configuration-out), and one row each."""
    from irrepprobe.metrics.correlation import loco_verdict
    from irrepprobe.report.experiment import experiment_report

    rows = []
    for size, g in runs.groupby("size"):
        sub = {k: res[k][res[k]["run"].isin(g["run"])] for k in ("runs", "utilisation", "knn")}
        experiment_report(sub, out / f"n{size}", f"{title}, {size} training molecules", command=command)
        corr = pd.read_csv(out / f"n{size}" / "tables" / "correlation.csv").iloc[0]
        loco = pd.read_csv(out / f"n{size}" / "tables" / "leave_one_config_out.csv")
        rows.append({"size": size, "runs": int(corr["n"]), "configurations": int(corr["groups"]),
                     "Spearman rho (within target)": round(corr["rho"], 2), "ci_low": round(corr["ci_low"], 2),
                     "ci_high": round(corr["ci_high"], 2), "leave one configuration out": loco_verdict(loco),
                     "report": f"[n{size}](n{size}/report.md)"})
    return pd.DataFrame(rows)


def panels(n: int, cols: int, w: float, h: float):
    """A figure with ``n`` panels in rows of ``cols``, the unused ones switched off."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def save(df: pd.DataFrame, out: Path, name: str) -> str:
    save_csv(df, out / "tables" / f"{name}.csv")
    return f"tables/{name}.csv"
