"""Rattled, strained bulk crystals for the periodic reports (ASE only, no labels): diamond Si and fcc Cu
supercells of 16 atoms side by side, and an Si-only set (one stoichiometry).

    python analyses/crystals/make_cells.py OUT_DIR
writes OUT_DIR/si_cu.extxyz (40 cells, half Si, half Cu) and OUT_DIR/si.extxyz (20 Si cells)."""
from __future__ import annotations

import sys
from pathlib import Path

from ase.build import bulk
from ase.io import write


def cells(kind: str, n: int, seed: int) -> list:
    out = []
    for i in range(n):
        if kind == "Si":
            at = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1)
        else:
            at = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1)
        at.rattle(stdev=0.03 + 0.02 * (i % 4), seed=seed + i)  # thermal-like displacements, 0.03-0.09 A
        at.set_cell(at.cell * (1 + 0.01 * (i % 5 - 2)), scale_atoms=True)  # +-2% strain
        out.append(at)
    return out


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mixed = [c for pair in zip(cells("Si", 20, 0), cells("Cu", 20, 100)) for c in pair]
    write(out / "si_cu.extxyz", mixed)
    write(out / "si.extxyz", cells("Si", 20, 200))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/crystals"))
