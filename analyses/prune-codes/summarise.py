"""reports/prune-codes/: a family's model of reports/codes without l=2, pruned and fine-tuned by irrepprobe,
against the same small architecture trained from scratch (by irrepprobe's 200 steps, and by the family's own
tool with the original's recipe), every model scored on the same 150 QM9 test molecules.

    python analyses/prune-codes/summarise.py mace|nequip   (in an environment with that family's extra)
    python analyses/prune-codes/summarise.py index         (reports/prune-codes/README.md from both)
Run by analyses/prune-codes/run.sh."""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT  # noqa: E402

RUN = ROOT / "experiments" / "prune-codes"
CODES = ROOT / "experiments" / "codes" / "compare"
OUT = ROOT / "reports" / "prune-codes"
FILES = {  # original, pruned, small from scratch (200 steps), small from scratch (own tool), the tool's recipe
    "mace": (CODES / "mace" / "mace.model", "pruned.model", "scratch.model", RUN / "mace" / "scratch" / "small.model",
             "mace_run_train, hidden 8x0e+8x1o+8x2e, max_ell 2, 40 epochs", "8x0e+8x1o, max_ell 1, 40 epochs"),
    "nequip": (CODES / "nequip" / "best.ckpt", "pruned.ckpt", "scratch.ckpt", RUN / "nequip" / "scratch" / "best.ckpt",
               "nequip-train, l_max 2, 30 epochs", "l_max 1, 30 epochs"),
}


def _table(lines: list[str], df: pd.DataFrame) -> list[str]:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return lines + ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)] + [
        "| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)] + [""]


def family(name: str) -> None:
    from irrepprobe.adapters import get_adapter
    from irrepprobe.adapters.base import parameters
    from irrepprobe.data.structures import read_structures
    from irrepprobe.fileio import save_csv, save_text
    from irrepprobe.metrics.finetune import outputs
    from irrepprobe.prune.family import _speed

    original, pruned, scratch, own, recipe, small_recipe = FILES[name]
    run, out = RUN / name / "pruned", OUT / name
    adapter = get_adapter(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = adapter.load(str(original), trust=True)
        models = {f"original ({recipe})": full,
                  "pruned by irrepprobe, before fine-tuning": adapter.without_orders(full, [2]),
                  "pruned by irrepprobe, fine-tuned (200 steps)": adapter.load(str(run / pruned), trust=True),
                  "small from scratch by irrepprobe (200 steps)": adapter.load(str(run / scratch), trust=True),
                  f"small from scratch by its own tool ({small_recipe})": adapter.load(str(own), trust=True)}
    test = read_structures(CODES / "data" / "test.xyz")
    truth = np.asarray(test.labels["u0_atom"], dtype=np.float64).reshape(len(test), -1)
    n_atoms = test.n_atoms.numpy().astype(np.float64)[:, None]
    batches = {k: list(adapter.batches(m, test, 32)) for k, m in models.items()}
    preds = {k: outputs(m, batches[k], False)["energy"] for k, m in models.items()}
    first = next(iter(models))
    speed = _speed(models, batches[first], forces=True)
    rows = []
    for k, m in models.items():
        rows.append({"model": k, "parameters": parameters(m.module),
                     "U0 MAE (meV/atom)": 1000 * float(np.abs((preds[k] - truth) / n_atoms).mean()),
                     "MAE vs original (meV/atom)": 1000 * float(np.abs((preds[k] - preds[first]) / n_atoms).mean()),
                     "structures/s (energy and forces)": speed[k]})
    table = pd.DataFrame(rows)
    table["speed-up"] = table["structures/s (energy and forces)"] / table["structures/s (energy and forces)"].iloc[0]
    out.mkdir(parents=True, exist_ok=True)
    save_csv(table, out / "test_comparison.csv")
    for f in ("comparison.csv", "md_speed.csv"):
        if (run / f).exists():
            shutil.copy(run / f, out / f)
    shutil.copy(run / "report.md", out / "prune_report.md")
    settings = json.loads((run / "pruned.json").read_text())
    command = next((line.split("`")[1] for line in (run / "report.md").read_text().splitlines()
                    if line.startswith("Command: `")), "?")
    lines = [f"# {name}: l=2 pruned and fine-tuned, against the small architecture trained from scratch", "",
             f"Made by `bash analyses/prune-codes/run.sh`; its prune step: `{command}`.", "",
             f"The {name} model of `reports/codes` ({recipe}) loses l=2 by surgery in the family's own classes "
             f"(written as `{pruned}`, which the family's own loader reads), then is fine-tuned for "
             f"{settings['steps']} Adam steps (learning rate {settings['lr']:g}, batches of {settings['batch_size']}) "
             f"toward the U0 labels of {settings['fit']} training molecules. Scored here on the 150 test molecules "
             "none of the models saw: U0 per atom against the label and against the original's prediction; speed "
             "as structures per second of energy and forces through the family's own forward, the models "
             "interleaved batch by batch (3 rounds) on this 2-core CPU with other jobs running: a ratio from one run.",
             ""]
    lines = _table(lines, table)
    if (run / "md_speed.csv").exists():
        md = pd.read_csv(run / "md_speed.csv").pivot(index="system", columns="model", values="MD steps/s")
        lines = _table(lines + ["MD steps per second through the family's own ASE calculator (Langevin, 300 K, "
                                "0.5 fs, interleaved):", ""], md.round(2).reset_index())
    else:
        note = next((line for line in (run / "report.md").read_text().splitlines() if line.startswith("MD speed")), "")
        lines += [note, ""] if note else []
    lines += ["prune's own table (on the 20% of the training molecules held out from fine-tuning) is in "
              "`comparison.csv` and `prune_report.md`.", ""]
    save_text("\n".join(lines), out / "README.md")
    print(f"-> {out / 'README.md'}")


def index() -> None:
    from irrepprobe.fileio import save_text

    lines = ["# Pruning MACE and NequIP: l=2 removed, fine-tuned, against training the small model from scratch", "",
             "Made by `bash analyses/prune-codes/run.sh` (its header has every step). Each family's model of "
             "`reports/codes`, trained by its own tool on the same QM9 molecules (H, C, N, O; U0 atomization "
             "energy), loses l=2 by surgery (`irrepprobe prune --format FAMILY --drop-l 2`), is fine-tuned for 200 "
             "steps on the training molecules' labels, and is scored on 150 test molecules beside the same small "
             "architecture trained from scratch (200 steps by irrepprobe; the full recipe by the family's tool).", ""]
    for name in FILES:
        path = OUT / name / "test_comparison.csv"
        if path.exists():
            lines = _table(lines + [f"## {name} ([details]({name}/README.md))", ""], pd.read_csv(path))
    said = []
    for name in FILES:
        path = OUT / name / "test_comparison.csv"
        if not path.exists():
            continue
        t = pd.read_csv(path)
        mae = dict(zip(range(len(t)), t["U0 MAE (meV/atom)"]))
        said.append(f"- {name}: pruned and fine-tuned for 200 steps, {mae[2]:.1f} meV/atom on the test molecules, "
                    f"against {mae[0]:.1f} for the original and {mae[4]:.1f} for the small architecture trained from "
                    f"scratch by its own tool ({mae[3]:.1f} from scratch with the same 200 steps); "
                    f"{t['speed-up'].iloc[2]:.1f}x the original's structures per second with "
                    f"{t['parameters'].iloc[2] / t['parameters'].iloc[0]:.0%} of its parameters. Before fine-tuning the "
                    f"pruned model is {t['MAE vs original (meV/atom)'].iloc[1]:.2g} meV/atom from the original.")
    lines += ["## What it says", ""] + said + [""]
    lines += ["## Where the evidence is weak", "",
              "- One seed per arm, tiny models (a few thousand parameters) and 150 test molecules; MACE's first "
              "product had collapsed l>0 outputs before pruning (see `reports/codes`), so its l=2 carried little.",
              "- Speeds of models this small are dominated by Python and graph overhead, not by the tensor products "
              "pruning removes: the ratios say little about production-size models.",
              "- Allegro is not pruned: its tensor tracks couple every order in each tensor product with weights "
              "shared across paths, and irrepprobe has no surgery for them (`prune` says so).", ""]
    save_text("\n".join(lines), OUT / "README.md")
    print(f"-> {OUT / 'README.md'}")


if __name__ == "__main__":
    index() if sys.argv[1] == "index" else family(sys.argv[1])
