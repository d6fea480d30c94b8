"""The 22 dimers of ase.collections.s22 as extended XYZ, each with its CCSD(T) interaction energy (eV, ase's
S22 reference, ``interaction_energy``) as a label: what the probes of reports/so3lr/s22 can look for.

    python analyses/so3lr/s22.py OUT.extxyz
"""
import sys
from pathlib import Path

from ase.collections import s22
from ase.data.s22 import data
from ase.io import write

frames = []
for name in s22.names:
    atoms = s22[name].copy()
    atoms.info = {"name": name, "interaction_energy": float(data[name]["interaction energy CC"])}
    frames.append(atoms)
out = Path(sys.argv[1])
out.parent.mkdir(parents=True, exist_ok=True)
write(out, frames, format="extxyz")
print(f"{len(frames)} dimers -> {out}")
