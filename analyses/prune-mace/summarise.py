"""reports/prune-mace/README.md: MACE without l=2, pruned and fine-tuned by irrepprobe, against the same small
architecture trained from scratch (by irrepprobe's 200 steps, and by mace_run_train's full recipe), every
model scored on the same 150 QM9 test molecules. Run by analyses/prune-mace/run.sh."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT  # noqa: E402

RUN = ROOT / "experiments" / "prune-mace"
CODES = ROOT / "experiments" / "codes" / "compare"
OUT = ROOT / "reports" / "prune-mace"


def main() -> None:
    import warnings

    from irrepprobe.adapters import get_adapter
    from irrepprobe.adapters.base import parameters
    from irrepprobe.data.structures import read_structures
    from irrepprobe.fileio import save_csv, save_text
    from irrepprobe.metrics.recovery import _predict
    from irrepprobe.prune.family import _speed

    adapter = get_adapter("mace")
    files = {"original (mace_run_train, hidden 8x0e+8x1o+8x2e, max_ell 2, 40 epochs)": CODES / "mace" / "mace.model",
             "pruned by irrepprobe, before fine-tuning": None,
             "pruned by irrepprobe, fine-tuned (200 steps)": RUN / "pruned" / "pruned.model",
             "small from scratch by irrepprobe (200 steps)": RUN / "pruned" / "scratch.model",
             "small from scratch by mace_run_train (hidden 8x0e+8x1o, max_ell 1, 40 epochs)":
                 RUN / "scratch" / "small.model"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {k: adapter.load(str(v), trust=True) for k, v in files.items() if v is not None}
        first = next(iter(models))
        models = {first: models[first], "pruned by irrepprobe, before fine-tuning":
                  adapter.without_orders(models[first], [2]), **{k: v for k, v in models.items() if k != first}}
    test = read_structures(CODES / "data" / "test.xyz")
    truth = test.labels["u0_atom"][:, None] if test.labels["u0_atom"].ndim == 1 else test.labels["u0_atom"]
    n_atoms = test.n_atoms.numpy().astype(np.float64)[:, None]
    batches = {k: list(adapter.batches(m, test, 32)) for k, m in models.items()}
    preds = {k: _predict(m, batches[k], False)["energy"] for k, m in models.items()}
    speed = _speed(models, batches[first], forces=True)
    rows = []
    for k, m in models.items():
        err = (preds[k] - truth) / n_atoms
        rows.append({"model": k, "parameters": parameters(m.module),
                     "U0 MAE (meV/atom)": 1000 * float(np.abs(err).mean()),
                     "MAE vs original (meV/atom)": 1000 * float(np.abs((preds[k] - preds[first]) / n_atoms).mean()),
                     "structures/s (energy and forces)": speed[k]})
    table = pd.DataFrame(rows)
    table["speed-up"] = table["structures/s (energy and forces)"] / table["structures/s (energy and forces)"].iloc[0]
    OUT.mkdir(parents=True, exist_ok=True)
    save_csv(table, OUT / "test_comparison.csv")
    for name in ("comparison.csv", "md_speed.csv"):
        if (RUN / "pruned" / name).exists():
            shutil.copy(RUN / "pruned" / name, OUT / name)
    shutil.copy(RUN / "pruned" / "report.md", OUT / "prune_report.md")
    settings = json.loads((RUN / "pruned" / "pruned.json").read_text())
    md = pd.read_csv(RUN / "pruned" / "md_speed.csv") if (RUN / "pruned" / "md_speed.csv").exists() else None
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    best_small = table.iloc[4]["U0 MAE (meV/atom)"]
    tuned = table.iloc[2]["U0 MAE (meV/atom)"]
    lines = ["# MACE without l=2: pruned and fine-tuned, against the small architecture trained from scratch", "",
             "Produced by `bash analyses/prune-mace/run.sh` (its header has every step); the prune step is `"
             + _prune_command() + "`.", "",
             f"The MACE model of `reports/codes` (trained by `mace_run_train` on {settings['fit'] + settings['held_out']} "
             "QM9 molecules with H, C, N, O to the U0 atomization energy, 40 epochs) loses l=2: hidden irreps "
             "8x0e+8x1o+8x2e -> 8x0e+8x1o and max_ell 2 -> 1, by surgery in MACE's own classes (the file is a "
             "`.model` that `MACECalculator` loads). Fine-tuning: "
             f"{settings['steps']} Adam steps (learning rate {settings['lr']:g}, batches of {settings['batch_size']}) "
             f"toward the U0 labels of {settings['fit']} training molecules. Scored here on the 150 test molecules "
             "none of the models saw (U0 per atom against the label, and against the original's prediction).", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in table.itertuples(index=False)]
    lines += ["", "Table: [test_comparison.csv](test_comparison.csv). Speed: structures per second of energy and "
              "forces through our adapter (MACE's own forward), the models interleaved batch by batch, 3 rounds, "
              "on this 2-core CPU machine with other jobs running: a ratio from one run.", ""]
    if md is not None:
        piv = md.pivot(index="system", columns="model", values="MD steps/s").round(2).reset_index()
        lines += ["MD steps per second through `MACECalculator` (ASE Langevin, 300 K, 0.5 fs, interleaved):", "",
                  "| " + " | ".join(piv.columns) + " |", "|" + "---|" * len(piv.columns)]
        lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in piv.itertuples(index=False)] + [""]
    lines += ["## What it says", "",
              f"- The pruned model after {settings['steps']} fine-tuning steps: {tuned:.1f} meV/atom on the test "
              f"molecules; the same small architecture trained from scratch with MACE's full recipe: "
              f"{best_small:.1f} meV/atom; the original: {table.iloc[0]['U0 MAE (meV/atom)']:.1f}.",
              "- prune's own table (`comparison.csv`, `prune_report.md`) compares on the 20% of the training "
              "molecules held out from fine-tuning.", "",
              "## Where the evidence is weak", "",
              "- One seed, a tiny model (about 5k parameters) and 150 test molecules; the original's first product "
              "has collapsed l>0 outputs (see `reports/codes`), so its l=2 carried little before pruning.",
              "- Speeds of a model this small are dominated by Python overhead, not by the tensor products the "
              "pruning removes; the ratio says little about a production-size MACE.",
              "- NequIP / Allegro are not pruned: irrepprobe has no surgery for them yet (`prune --format nequip` "
              "says so).", ""]
    save_text("\n".join(lines), OUT / "README.md")
    print(f"-> {OUT / 'README.md'}")


def _prune_command() -> str:
    text = (RUN / "pruned" / "report.md").read_text()
    return next((line.split("`")[1] for line in text.splitlines() if line.startswith("Command: `")), "?")


if __name__ == "__main__":
    main()
