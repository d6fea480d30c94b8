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
    out = ["# The speed/accuracy front of pruned potentials (issue 39)", ""]
    for spec in fronts:
        path, _, title = spec.partition("=")
        path = Path(path)
        name = path.parent.name if path.name == "front" else path.name
        dest = report / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(path, dest, ignore=shutil.ignore_patterns("*.pth", "*.model", "*.ckpt", "cache"))
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
    (report / "README.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
