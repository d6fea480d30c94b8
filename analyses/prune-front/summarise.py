"""reports/prune-front/README.md from the fronts' tables: each front's table, figure and the performance
target of issue 39 (a cut at least 2x the original's MD steps/s whose error is within 10% of the
original's, with seeds), decided on the interval over seeds: met (upper end within), undecided (the
interval straddles 1.1x the original's error), not met.

    python analyses/prune-front/summarise.py REPORT_DIR FRONT_DIR[=TITLE] ...
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd


INTRO = [
    "Is there a cut of a potential, channels and orders, at least 2x as fast in MD through its own calculator "
    "whose error stays within 10% of the original's, at the fine-tuning budget a 2-core machine allows?",
    "",
    "**No, at this budget.** The fastest cuts are 3.55x (SevenNet-0 without l=2 and half of every hidden block's "
    "channels) and 2.2x (MACE without l=2 and half its channels) as fast in MD. After fine-tuning they are 1.45x "
    "the original's force error (SevenNet-0, against SevenNet-l3i5) and 2.5x its energy error (MACE, against "
    "QM9's DFT U0), with intervals over 2 seeds far from 1.1x. Halving the channels alone gives 1.48x (SevenNet-0) "
    "and 1.14x (MACE) MD speed at the same cost in error: at these sizes the cut of l=2 buys the speed. The "
    "control, the original fine-tuned with the same budget, is also the fairest baseline. For SevenNet-0 it "
    "moves nearer the l3i5 labels (forces 70 against 107 meV/A), so the gap the pruned models must close is larger "
    "still. For MACE it does not (25.7 against 22.6 meV/atom).",
    "",
    "**SevenNet-l3i5 beside SevenNet-0, its authors' smaller model.** Fine-tuned toward l3i5's own energies and "
    "forces, l3i5 without l=3 (SevenNet-0's architecture, 842,623 parameters) runs MD 2.47x as fast and stays 47 "
    "meV/A [46.8, 47.5] from l3i5 on forces; SevenNet-0 itself, as fast (2.75x), is 107 meV/A from it. With half "
    "of the hidden channels as well (351,871 parameters) it is 4.1x as fast at 137 meV/A [131, 143]. Against "
    "l3i5's own labels the original's error is zero, so the 10% target cannot be met by any cut; the comparison "
    "that means something is with SevenNet-0, and there the pruned l3i5 is the nearer copy at the same speed "
    "(nearer to l3i5, which is not nearer to DFT: reports/prune-sevenn).",
    "",
    "Setup:",
    "- SevenNet-0 is fine-tuned with 2 seeds of 100 Adam steps (learning rate 1e-3, batches of 16) toward SevenNet-l3i5's "
    "energies and forces.",
    "  - l3i5 is the same family, is trained on the same PBE data and is nearer WIEN2k (Delta median 1.64 against 1.81 meV/atom, "
    "reports/prune-sevenn).",
    "  - Data: the 450 prune-sevenn structures (crystals, EMT-MD cells, QM9 molecules), scored on their 150 held-out "
    "structures of other compositions and trajectories.",
    "  - SevenNet-0 itself is 107 meV/A from l3i5 on forces.",
    "- MACE: `tests/data/mace/tiny_mace.model`, trained by `mace_run_train` on 400 QM9 molecules. It is the only MACE on this "
    "machine, and a toy: 5,680 parameters, 8 channels per block.",
    "  - Fine-tuned with 2 seeds of 200 steps toward QM9's DFT `u0_atom` on 400 QM9 molecules it never saw, "
    "scored on its 100 test molecules. QM9 has no forces.",
    "- Channels are chosen by importance (each cut's `channels.csv`). MACE keeps one count for every block (its "
    "constructor's constraint). MD steps/s: Langevin through `SevenNetCalculator` / `MACECalculator`, all files of a front "
    "interleaved in one run on an idle 2-core CPU (64-atom Si; for MACE the largest test molecule in a box, x2).",
    "  - The control's 0.90x and 1.07x against the same architecture show the size of that timing noise.",
]

WEAK = [
    "## Where the evidence is weak, and what was not run",
    "",
    "- 100 (SevenNet) and 200 (MACE) fine-tuning steps, 2 seeds each. The pruned SevenNet-0 models are still 0.48 "
    "eV/atom off in energy: the loss weighs the per-atom energy by its variance over these mixed compositions, "
    "and 100 steps do not recover the energy offsets the cut moved. A longer fine-tuning may change the answer; "
    "the issue's 10% target is decided here only for this budget.",
    "- SevenNet-l3i5's front (`bash analyses/prune-front/l3i5.sh`) has no control (l3i5 fine-tuned toward its own "
    "labels is l3i5) and its MD speed was timed in a second run of the same command on an idle machine, reusing "
    "the fine-tunings: the first run's timing overlapped another job (its 9.7x was contention, not speed).",
    "- No `--validate` on the fronts' files (Delta, NVE and the rest) in this session; the pruned files are in "
    "experiments/prune-front (not committed) and `irrepprobe validate` takes them.",
    "- MD speed is one interleaved run of 2 rounds x 20 steps per file on a CPU: the ratio, not the numbers, may "
    "carry to a GPU; cuEquivariance kernels (equal channels across l) were not measured here.",
    "",
    "Commands: `bash analyses/prune-front/run.sh` (SevenNet-0; `analyses/prune-front/label.py` writes the l3i5 "
    "labels), `bash analyses/prune-front/mace.sh` (in a MACE environment), then `python analyses/prune-front/"
    "summarise.py reports/prune-front experiments/prune-front/sevennet-0=... experiments/prune-front/mace/front=... experiments/prune-front/sevennet-l3i5=...` "
    "(the titles above).",
]


def verdict(table: pd.DataFrame, q: str, against: str) -> list[str]:
    base = table[table["model"] == against].iloc[0]
    limit = 1.1 * base[f"{q} MAE"]
    speed0 = float(table.loc[table["model"] == "original", "MD steps/s"].iloc[0])
    lines = []
    for _, r in table[~table["model"].isin(["original", against])].iterrows():
        fast = r["MD steps/s"] / speed0
        mean, high = r[f"{q} MAE"], r[f"{q} MAE high"]
        if pd.isna(high):
            high = mean
        call = "met" if high <= limit else "undecided" if mean <= limit else "not met"
        lines.append(f"| {r['model']} | {fast:.2f}x | {mean:.4g} [{r[f'{q} MAE low']:.4g}, {high:.4g}] | {call if fast >= 2 else 'not 2x faster'} |")
    return lines


def main(report: Path, fronts: list[str]) -> None:
    report.mkdir(parents=True, exist_ok=True)
    out = ["# The speed/accuracy front of pruned potentials (issue 39)", "", *INTRO, ""]
    for spec in fronts:
        path, _, title = spec.partition("=")
        path = Path(path)
        name = path.parent.name if path.name == "front" else path.name
        dest = report / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(path, dest, ignore=shutil.ignore_patterns("*.pth", "*.model", "*.ckpt", "cache"))
        for page in dest.glob("*/report.html"):  # each cut's page is a table without a figure: its markdown only
            page.unlink()
        table = pd.read_csv(path / "front.csv")
        q = "forces" if table["forces MAE"].notna().any() and (table["forces MAE"] > 0).any() else "energy"
        out += [f"## {title or name}", "", f"![front]({name}/figures/front.png)", "",
                f"Whole report: [{name}/report.md]({name}/report.md). Error: {q} MAE on the held-out structures.", ""]
        for against in ("original", "control-original-fine-tuned"):
            if against not in set(table["model"]):
                continue
            out += [f"Target (at least 2x the original's MD steps/s, {q} error within 10% of **{against}**'s "
                    f"{table.loc[table['model'] == against, f'{q} MAE'].iloc[0]:.4g}):", "",
                    f"| cut | MD speed-up | {q} MAE (95% t interval over seeds) | target |", "|---|---|---|---|",
                    *verdict(table, q, against), ""]
    out += [*WEAK, ""]
    (report / "README.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
