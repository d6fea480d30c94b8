"""Split an extxyz file into train/val/test files by whole frames (bytes kept as they are), after a
seeded shuffle. Usage: python split.py IN.xyz OUTDIR N_TRAIN N_VAL N_TEST [SEED]"""
import sys
from pathlib import Path

import numpy as np


def frames(text: str) -> list[str]:
    lines, out, i = text.splitlines(keepends=True), [], 0
    while i < len(lines):
        n = int(lines[i])
        out.append("".join(lines[i:i + n + 2]))
        i += n + 2
    return out


def main(src, outdir, n_train, n_val, n_test, seed=0):
    fs = frames(Path(src).read_text())
    sizes = [int(n_train), int(n_val), int(n_test)]
    if sum(sizes) > len(fs):
        raise SystemExit(f"{src} has {len(fs)} frames, fewer than {sum(sizes)}")
    order = np.random.default_rng(int(seed)).permutation(len(fs))
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, n in zip(("train", "val", "test"), sizes):
        (outdir / f"{name}.xyz").write_text("".join(fs[j] for j in order[start:start + n]))
        start += n
        print(f"{outdir / name}.xyz: {n} structures")


if __name__ == "__main__":
    main(*sys.argv[1:])
