"""reports/sevenn/README.md from the two model reports that analyses/sevenn/run.sh wrote.

    python analyses/sevenn/summarise.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

MODELS = ("7net-0", "7net-l3i5")
OUT = ROOT / "reports" / "sevenn"


def _md(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in r) + " |"
             for r in df.itertuples(index=False)]
    return "\n".join(rows)


def _software() -> str:
    import os
    import platform
    from importlib.metadata import version

    pkgs = ", ".join(f"{p} {version(p)}" for p in ("irrepprobe", "sevenn", "torch", "e3nn", "ase"))
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU; Python {platform.python_version()}, {pkgs}"


def _cell(r) -> str:
    return f"{100 * r.scale_free:.1f} [{100 * r.scale_free_low:.1f}, {100 * r.scale_free_high:.1f}]"


def per_order(util: pd.DataFrame) -> pd.DataFrame:
    """Per point (layer), block and quantity scored: the scale-free utilisation (%) with its interval
    under each intervention, and the verdict (over every quantity)."""
    rows = []
    for (point, block, quantity), g in util.groupby(["point", "block", "quantity"], sort=False):
        row = {"point": point, "block": block, "quantity": quantity}
        for r in g.itertuples():
            row[r.intervention] = _cell(r)
        first = g.iloc[0]
        row["verdict"] = ("-" if point == "all" else "unreachable" if not first["reachable"]
                          else "used" if first["used"] else "unused")
        rows.append(row)
    return pd.DataFrame(rows)


def legs(orders: pd.DataFrame) -> list[str]:
    """The orders table (dependence / recovery / control, the verdict and the leg it rests on) as lines."""
    return [f"  - {r['order']}: dependence {r['dependence']}; recovery {r['recovery']}; fine-tuning alone "
            f"{r.get('fine-tuning alone (control)', '-')}; verdict **{r['verdict']}** (rests on {r['rests on']})"
            for r in orders.to_dict("records")]


def dipole(eq: pd.DataFrame) -> pd.DataFrame:
    d = eq[eq["target"] == "dipole_vec"][["point", "block", "r2", "r2_untrained", "r2_untrained_sd", "selectivity",
                                          "above_controls", "r2_control_task", "r2_shuffled"]]
    return d.round(3)


def findings(name: str, util: pd.DataFrame, eq: pd.DataFrame) -> list[str]:
    """The plain statements the tables support, computed from them."""
    zero = util[util["intervention"] == "zero"]
    out = []
    for q, joint in zero[zero["point"] == "all"].groupby("quantity", sort=False):
        what = "energy per atom" if q == "energy" else "forces"
        scale = "spread" if q == "energy" else "root mean square"
        out.append(f"- {name}: replacing one order at every layer at once moves the {what} by "
                   + "; ".join(f"{r.block} {100 * r.scale_free:.0f}% [{100 * r.scale_free_low:.0f}, "
                               f"{100 * r.scale_free_high:.0f}]" for r in joint.itertuples()) + f" of its {scale} (zeroed).")
    blocks = zero[zero["point"] != "all"].drop_duplicates(["point", "block"])
    unused = blocks[blocks["reachable"] & ~blocks["used"]]
    out.append(f"- {name}: unused blocks (interval below 5% under zero, mean and resample): "
               + (", ".join(f"{r.point} {r.block}" for r in unused.itertuples()) or "none") + ".")
    d = eq[eq["target"] == "dipole_vec"]
    above = d[d["above_controls"]]
    n_ctl = int(d["controls"].iloc[0]) if len(d) else 0
    out.append(f"- {name}: the dipole vector from the 1e blocks: probe R2 {d['r2'].min():.2f}-{d['r2'].max():.2f}, "
               f"the {n_ctl} untrained initialisations {d['r2_untrained'].min():.2f}-{d['r2_untrained'].max():.2f} "
               f"(sd across them at most {d['r2_untrained_sd'].max():.3f}), selectivity "
               f"{d['selectivity'].min():+.2f} to {d['selectivity'].max():+.2f}; above every initialisation: "
               + (", ".join(f"{r.point} ({r.selectivity:+.3f})" for r in above.itertuples()) or "no block")
               + (". Small gains over an architecture that already carries most of the dipole." if len(above)
                  and above["selectivity"].max() < 0.1 else "."))
    return out


WEAK = [
    "- Where the evidence is weak: QM9 holds no PBE labels, so utilisation is a shift of SevenNet's own "
    "prediction, not an error; ablation on 500 "
    "(7net-0) and 200 (7net-l3i5) molecules; QM9's small organic molecules are far from SevenNet's training "
    "data (MPtrj: inorganic crystals). A large shift says the model's energy depends on the block, not that "
    "the block makes it more accurate on these molecules.",
    "- Recovery is distillation on these molecules with a short budget (see each report's orders table for steps, "
    "split and learning rate): an order that recovers here can be dropped for this chemistry at this budget; "
    "one that does not may still recover with more steps or more data. Its intervals are within one model.",
]


def main() -> None:
    lines = ["# What a pretrained universal potential uses on organic molecules: SevenNet on QM9", ""]
    found = []
    meta = {}
    for name in MODELS:
        rep = OUT / name
        if not (rep / "tables" / "utilisation.csv").exists():
            print(f"missing {rep}: run analyses/sevenn/run.sh first", file=sys.stderr)
            continue
        cap_meta = json.loads((ROOT / "experiments" / "sevenn" / name / "meta.json").read_text())
        meta[name] = cap_meta
        util = pd.read_csv(rep / "tables" / "utilisation.csv")
        if "quantity" not in util:  # a report from before forces were scored: energy only
            util["quantity"] = "energy"
        eq = pd.read_csv(rep / "tables" / "probes_equivariant.csv")
        # a rerun that reused the costly stages keeps the run that measured them as timings_first_run.csv
        first = rep / "tables" / "timings_first_run.csv"
        timings = pd.read_csv(first if first.exists() else rep / "tables" / "timings.csv")
        found += findings(name, util, eq)
        orders = pd.read_csv(rep / "tables" / "orders.csv") if (rep / "tables" / "orders.csv").exists() else None
        if orders is None:
            found.append(f"- {name}: this report predates recovery (and, if its table has no forces, forces): the "
                         "dependence of the checkpoint only; `bash analyses/sevenn/run.sh` measures it again with "
                         "recovery.")
        if orders is not None:
            found.append(f"- {name}: does the architecture need each order, or only this checkpoint? Each order "
                         "masked (zeroed at every point and in the spherical harmonics), then the model fine-tuned "
                         "with the mask on toward its own energies and forces (distilled) and scored on held-out "
                         "molecules against the same fine-tuning without a mask:")
            found += legs(orders)
        lines += [f"## {name}", "", cap_meta["model_summary"] + ".", "",
                  f"Captured over {cap_meta['n_molecules']} molecules of {cap_meta['data']} in "
                  f"{cap_meta['seconds']:.0f} s; report in {timings['seconds'].sum() / 60:.0f} min "
                  f"([report.md]({name}/report.md), [report.html]({name}/report.html)). Ablation on the first "
                  f"{int(util['molecules'].iloc[0])} molecules.", "",
                  "Scale-free utilisation in % (mean absolute change of the predicted energy per atom over its "
                  "mean absolute deviation across the molecules, and of the force components over their root mean "
                  "square; QM9 holds no PBE labels, so this is how far ablation moves SevenNet's own prediction, "
                  "not its error), 95% paired bootstrap interval (rows stopped early by the sequential rule say so "
                  "in the report's `structures` column):", "",
                  _md(per_order(util)), "",
                  "Dipole vector (QM9's Mulliken dipole) from the l=1 (1e) blocks by an equivariant linear probe, "
                  "next to the same probe on the untrained model (same architecture, re-initialised):", "",
                  _md(dipole(eq)), ""]
    lines[2:2] = ["## Findings", "", *found, *WEAK, ""]
    lines += ["## How this was made", "",
              "`bash analyses/sevenn/run.sh` (captures: `irrepprobe capture MODEL --format sevenn --data qm9:test "
              "--subset 2000 --trust --batch-size 32 --out experiments/sevenn/MODEL`; reports: `irrepprobe report "
              "experiments/sevenn/MODEL --out reports/sevenn/MODEL --ablation-molecules N ...`, N = 500 "
              "for 7net-0 and 200 for 7net-l3i5; `--recovery --recovery-steps 200 --recovery-lr 1e-4`), then "
              "`python analyses/sevenn/summarise.py`.", "",
              f"Machine and software: {_software()}."]
    (OUT / "README.md").write_text("\n".join(lines) + "\n")
    print(f"-> {OUT / 'README.md'}")


if __name__ == "__main__":
    main()
