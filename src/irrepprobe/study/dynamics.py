"""``irrepprobe dynamics RUN_DIR``: utilisation and probe selectivity per block over the checkpoints a
run kept (``train.keep_epochs``), as tables, one figure and a short report. Each epoch's numbers are
kept in ``OUT/epochNNNN/`` so that an interrupted call resumes."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import metrics as M
from ..capture import capture_checkpoint, capture_untrained, load_capture
from ..errors import IrrepprobeError
from ..fileio import save_csv
from ..report import figures as F
from ..report.document import Document


def kept_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint kept under ``run_dir/epochs``, in epoch order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise IrrepprobeError(f"{run_dir} is not a run directory")
    found = sorted((int(m.group(1)), p) for p in (run_dir / "epochs").glob("epoch*.pt")
                   if (m := re.fullmatch(r"epoch(\d+)\.pt", p.name)))
    if not found:
        raise IrrepprobeError(f"{run_dir} holds no kept checkpoints (epochs/epochNNNN.pt): train it with "
                              "train.keep_epochs, e.g. --set 'train.keep_epochs=[0, 1, 2, 5, 10]'")
    return found


def _capture(ckpt: Path, out: Path, subset, device):
    """The epoch's capture in ``out/capture``, made once."""
    path = out / "capture"
    return load_capture(path) if (path / "meta.json").exists() else \
        capture_checkpoint(ckpt, subset=subset, out=path, device=device)


def _epoch(epoch: int, ckpt: Path, out: Path, control, subset, molecules, device, seed) -> pd.DataFrame:
    done = out / "blocks.csv"
    if done.exists():
        return pd.read_csv(done)
    cap = _capture(ckpt, out, subset, device)
    hidden = M.hidden_points(cap)
    util = M.utilisation(cap, ckpt, molecules=molecules, device=device, interventions=M.INTERVENTIONS,
                         seed=seed, n_boot=200)
    own = M.invariant_targets(cap).drop(columns=["squared error"], errors="ignore")
    probes = M.probe_scores(cap, own, control, points=hidden, seed=seed)
    per = util[util["point"] != "all"]
    zero = per[per["intervention"] == "zero"].set_index(["point", "block"])
    high = per.groupby(["point", "block"])["scale_free_high"].max()
    sel = probes.set_index(["point", "block"])
    rows = [{"epoch": epoch, "point": p, "block": b, "l": int(r["l"]), "utilisation": r["scale_free"],
             "utilisation_high": high[(p, b)], "reachable": bool(r["reachable"]), "used": bool(r["used"]),
             "r2": sel.loc[(p, b), "r2"], "selectivity": sel.loc[(p, b), "selectivity"],
             "mae": float(abs(cap.errors).mean())}
            for (p, b), r in zero.iterrows()]
    table = pd.DataFrame(rows)
    save_csv(table, done)
    return table


def _figure(table: pd.DataFrame, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for (p, b), g in table.groupby(["point", "block"], sort=False):
        if not g["reachable"].all():
            continue
        style = "-" if b.startswith("0") else "--"
        axes[0].plot(g["epoch"], 100 * g["utilisation"], style, marker="o", ms=3, label=f"{p} {b}")
        axes[1].plot(g["epoch"], g["selectivity"], style, marker="o", ms=3, label=f"{p} {b}")
    axes[0].set_ylabel("scale-free utilisation, zero ablation (%)")
    axes[1].set_ylabel("probe selectivity for the own target (R2 - R2 untrained)")
    for ax in axes:
        ax.set_xlabel("epoch (0: before training)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def dynamics(run_dir, out=None, subset: int | None = 500, molecules: int | None = 200, device: str = "cpu",
             seed: int = 0, command: str | None = None, log=print) -> dict:
    """Measure every kept checkpoint of ``run_dir`` on ``subset`` molecules of its test split (ablation
    on the first ``molecules``, every intervention) and write ``out`` (default ``RUN_DIR/dynamics``)."""
    run_dir = Path(run_dir)
    ckpts = kept_checkpoints(run_dir)
    out = Path(out) if out else run_dir / "dynamics"
    first = ckpts[0][1]
    from ..train import load_checkpoint

    n_test = len(load_checkpoint(first)["split"]["test"])
    subset = None if subset is None or subset >= n_test else subset  # all of a small test split
    # the first kept epoch's capture also gives the control its structures
    cap = _capture(first, out / f"epoch{ckpts[0][0]:04d}", subset, device)
    control = (load_capture(out / "control") if (out / "control" / "meta.json").exists() else
               capture_untrained(cap, out / "control", device=device))
    tables = []
    for epoch, ckpt in ckpts:
        log(f"epoch {epoch}: {ckpt.name}")
        tables.append(_epoch(epoch, ckpt, out / f"epoch{epoch:04d}", control, subset, molecules, device, seed))
    table = pd.concat(tables, ignore_index=True)
    save_csv(table, out / "tables" / "dynamics.csv")
    title = f"{run_dir.name}: {cap.meta['target']}, {len(ckpts)} kept checkpoints, {cap.meta['n_molecules']} test molecules"
    png = F.save(_figure(table, title), out / "figures", "dynamics")
    doc = Document(f"irrepprobe dynamics: {run_dir}")
    doc.text(f"Checkpoints kept by train.keep_epochs at epochs {', '.join(str(e) for e, _ in ckpts)}; each "
             f"captured over {cap.meta['n_molecules']} molecules of the run's test split. Utilisation: the "
             "scale-free score of zero ablation (share of what the model learned beyond the composition baseline, "
             f"on the first {molecules} molecules; `utilisation_high` is the upper end of its 95% interval, the "
             "largest over zero, mean and resample ablation; `used` is the verdict at 5%). Selectivity: the "
             "ridge probe of the own target beyond composition from the block's invariants, R2 minus that of the "
             "same probe on the untrained model. Blocks unreachable by construction are left out of the figure.")
    doc.figure(png, "Utilisation and selectivity per block over training")
    pivot = table.pivot_table(index=["point", "block"], columns="epoch", values="utilisation", sort=False)
    doc.table((100 * pivot).round(1).reset_index(), "tables/dynamics.csv")
    if command:
        doc.heading("How this report was made")
        doc.text(f"Command: `{command}`")
    md, html = doc.write(out)
    return {"table": table, "report_md": md, "report_html": html, "out": out}
