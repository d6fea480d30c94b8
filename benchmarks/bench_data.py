"""QM9 data benchmark: time to build the tensor cache from qm9pack, and to load it once built.

Measures (a) ``load_qm9(cache_dir=tmp, rebuild=True)`` into a fresh temporary directory (parsing
the qm9pack CSV files and writing the cache; goal < 60 s) and (b) ``load_qm9(cache_dir=tmp)`` from
that cache, best of 3 (goal < 5 s). Prints a markdown table.

Run:  python benchmarks/bench_data.py
"""
from __future__ import annotations

import tempfile
import time

import torch
from _common import cpu_model

from irrepprobe.data import load_qm9



def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        qm9 = load_qm9(cache_dir=tmp, rebuild=True)
        build = time.perf_counter() - t0
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            load_qm9(cache_dir=tmp)
            loads.append(time.perf_counter() - t0)
    print(f"Setup: CPU {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{len(qm9)} molecules, {qm9.pos.shape[0]} atoms\n")
    print("| stage | seconds | goal | met |")
    print("|---|---:|---|---|")
    for stage, sec, goal in [("first build (parse qm9pack + write cache)", build, 60.0),
                             ("cached load (best of 3)", min(loads), 5.0)]:
        print(f"| {stage} | {sec:.2f} | < {goal:.0f} s | {'yes' if sec < goal else 'NO'} |")


if __name__ == "__main__":
    main()
