"""Label the prune-sevenn structures with SevenNet-l3i5's energies and forces, the teacher of the SevenNet-0
front (l3i5 is SevenNet-0's own family, trained on the same MPtrj PBE data, and nearer WIEN2k in the Delta
test: median 1.64 against 1.81 meV/atom, reports/prune-sevenn). With these labels SevenNet-0 has an error of
its own, so "within 10% of the original's force error" means something.

    python analyses/prune-front/label.py SRC_DIR OUT_DIR

reads SRC_DIR/structures.extxyz and SRC_DIR/held_out.extxyz (analyses/prune-sevenn/make_data.py) and writes
OUT_DIR/structures.extxyz and OUT_DIR/held_out.extxyz with l3i5's energy (eV) and forces (eV/A)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from irrepprobe.adapters import get_adapter
from irrepprobe.data.structures import from_atoms


def main(src: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    adapter = get_adapter("sevenn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teacher = adapter.load("7net-l3i5", trust=True)
    for name in ("structures.extxyz", "held_out.extxyz"):
        if (out / name).exists():
            continue
        frames = read(src / name, index=":")
        energies, forces = [], []
        for b in adapter.batches(teacher, from_atoms(frames), 16):
            with torch.enable_grad():
                energies.append(adapter.predict(teacher, b, forces=True).detach()[:, 0].double().numpy())
            f = adapter.forces(teacher, b).detach().double().numpy()
            counts = np.bincount(b.atom_batch.numpy(), minlength=b.n_structures)
            forces += np.split(f, np.cumsum(counts)[:-1])
        energies = np.concatenate(energies)
        for atoms, e, f in zip(frames, energies, forces):
            atoms.calc = SinglePointCalculator(atoms, energy=float(e), forces=f)
        tmp = out / (name + ".tmp")
        write(tmp, frames, format="extxyz")
        tmp.replace(out / name)
        print(f"{name}: {len(frames)} structures labelled by 7net-l3i5")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
