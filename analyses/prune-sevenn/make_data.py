"""The structures SevenNet-l3i5 is distilled on when pruned of l=3 (no labels: the teacher is l3i5 itself).

    python analyses/prune-sevenn/make_data.py OUT_DIR [N_PER_KIND]

writes OUT_DIR/structures.extxyz (fitted), N_PER_KIND (default 150) structures of each kind, interleaved:
* rattled, strained bulk cells (ASE): diamond Si, fcc Cu, rock-salt NaCl and MgO, bcc Fe (8-16 atoms);
* cells sampled from short Langevin MD under ASE's EMT potential (fcc Cu, Al and Ni, 32 atoms, 600 K);
* QM9 molecules (the first of QM9's seed-0 training split, from qm9pack);
and OUT_DIR/held_out.extxyz, N_PER_KIND // 5 of each of five kinds that differ from the fitted ones by
composition or trajectory (issue 38: the earlier split held out late frames of the fitted trajectories):
rattled rock-salt KCl and LiF and bcc W cells (elements or compounds never fitted), EMT-MD cells of fcc Pd
and Ag (new compositions) and of Cu from a new trajectory at 900 K, and QM9 molecules of the test split."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution


FITTED = [lambda: bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1),
          lambda: bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1),
          lambda: bulk("NaCl", "rocksalt", a=5.64, cubic=True),
          lambda: bulk("MgO", "rocksalt", a=4.21, cubic=True),
          lambda: bulk("Fe", "bcc", a=2.87, cubic=True) * (2, 2, 2)]
NEW = [lambda: bulk("KCl", "rocksalt", a=6.29, cubic=True),
       lambda: bulk("LiF", "rocksalt", a=4.03, cubic=True),
       lambda: bulk("W", "bcc", a=3.17, cubic=True) * (2, 2, 2)]


def rattled(n: int, seed: int = 0, kinds=FITTED) -> list:
    out = []
    for i in range(n):
        at = kinds[i % len(kinds)]()
        at.rattle(stdev=0.03 + 0.02 * (i % 4), seed=seed + i)
        at.set_cell(at.cell * (1 + 0.01 * (i % 5 - 2)), scale_atoms=True)
        out.append(at)
    return out


def md_sampled(n: int, seed: int = 0, metals=(("Cu", 3.61), ("Al", 4.05), ("Ni", 3.52)), temperature=600) -> list:
    out, per = [], -(-n // len(metals))
    for k, (el, a) in enumerate(metals):
        at = bulk(el, "fcc", a=a, cubic=True) * (2, 2, 2)
        at.calc = EMT()
        MaxwellBoltzmannDistribution(at, temperature_K=temperature, rng=np.random.default_rng(seed + k))
        dyn = Langevin(at, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=np.random.default_rng(seed + k))
        for _ in range(per):
            dyn.run(10)
            snap = at.copy()
            snap.calc = None
            out.append(snap)
    return out[:n]


def molecules(n: int, split: str = "train") -> list:
    import torch

    from irrepprobe.data import load_qm9, make_split
    from irrepprobe.data.structures import qm9_structures

    qm9 = load_qm9()
    s = qm9_structures(qm9, torch.as_tensor(make_split(len(qm9), seed=0)[split][:n]))
    out = []
    for i in range(len(s)):
        at = s.atoms(i)
        at.info, at.arrays = {}, {k: v for k, v in at.arrays.items() if k in ("numbers", "positions")}
        out.append(at)
    return out


def main(out: Path, n: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    kinds = [rattled(n), md_sampled(n), molecules(n)]
    mixed = [s for group in zip(*kinds) for s in group]
    write(out / "structures.extxyz", mixed)
    print(f"{out / 'structures.extxyz'}: {len(mixed)} structures")
    k = max(1, n // 5)
    held = (rattled(2 * k, 10_000, NEW) + md_sampled(k, seed=100, metals=(("Pd", 3.89), ("Ag", 4.09)))
            + md_sampled(k, seed=200, metals=(("Cu", 3.61),), temperature=900) + molecules(k, "test"))
    write(out / "held_out.extxyz", held)
    print(f"{out / 'held_out.extxyz'}: {len(held)} structures")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/prune-sevenn"),
         int(sys.argv[2]) if len(sys.argv) > 2 else 150)
