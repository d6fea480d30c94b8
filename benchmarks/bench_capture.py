"""Capture overhead and memory.

1. Time of ``run_capture`` over a checkpoint's test split vs the bare ``torch.no_grad()`` forward
   pass over the same batches (same loader), as a ratio; goal <= 1.10x.
2. Peak resident memory of a capture of 1,000 and of 10,000 molecules (each in a fresh process,
   without --save-nodes); goal: within 10% of each other.

    python benchmarks/bench_capture.py [CKPT] [--batch-size 64] [--repeats 3]

CKPT defaults to the example checkpoint shipped with irrepprobe. The 10,000 molecules are taken from
QM9 at random for the memory runs (the capture code does not care which split they belong to).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from _common import cpu_model



def timing(ckpt, batch_size, repeats):
    from irrepprobe.capture import find_points, run_capture
    from irrepprobe.config import Config
    from irrepprobe.data import load_qm9, loader, target_values
    from irrepprobe.train import load_checkpoint, model_from_checkpoint

    raw = load_checkpoint(ckpt)
    cfg = Config.from_dict(raw["config"])
    qm9 = load_qm9()
    y = target_values(qm9, cfg.data.target)
    idx = raw["split"]["test"]
    model = model_from_checkpoint(raw)
    batches = list(loader(qm9, y, idx, batch_size))  # collate once: time the model, not the loader
    points = find_points(model)

    def bare():
        with torch.no_grad():
            for b in batches:
                model(b)

    def hooked():
        run_capture(model, batches, points)

    bare(), hooked()  # warm-up
    t_bare, t_cap = [], []
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        t = time.perf_counter(); bare(); t_bare.append(time.perf_counter() - t)
        t = time.perf_counter(); hooked(); t_cap.append(time.perf_counter() - t)
    return len(idx), len(points), min(t_bare), min(t_cap)


def peak_rss(ckpt, n, batch_size, hooks: bool = True) -> dict:
    code = f"""
import resource, json, torch, tempfile
from irrepprobe.capture import find_points, run_capture
from irrepprobe.config import Config
from irrepprobe.data import load_qm9, loader, target_values
from irrepprobe.train import load_checkpoint, model_from_checkpoint
raw = load_checkpoint({str(ckpt)!r}); cfg = Config.from_dict(raw["config"])
qm9 = load_qm9(); y = target_values(qm9, cfg.data.target)
idx = torch.randperm(len(qm9), generator=torch.Generator().manual_seed(0))[:{n}]
model = model_from_checkpoint(raw)
if {hooks}:
    rec, out, tgt, ids = run_capture(model, loader(qm9, y, idx, {batch_size}), find_points(model))
    arrays = rec.molecule_arrays()
else:
    with torch.no_grad():
        for b in loader(qm9, y, idx, {batch_size}):
            model(b)
print(json.dumps({{"n": len(idx), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from irrepprobe.examples import example_checkpoint

    ckpt = args.checkpoint or example_checkpoint()
    n, n_points, t_bare, t_cap = timing(ckpt, args.batch_size, args.repeats)
    print(f"setup: cpu={cpu_model()}  torch {torch.__version__}  threads={torch.get_num_threads()}  "
          f"checkpoint={ckpt}  batch={args.batch_size}  points={n_points}  best of {args.repeats}")
    print()
    print("| stage | molecules | bare forward s | capture s | ratio (goal <= 1.10) |")
    print("|---|---|---|---|---|")
    print(f"| test split | {n} | {t_bare:.3f} | {t_cap:.3f} | {t_cap / t_bare:.3f} |")
    print()
    print("| molecules | peak RSS MB, capture | peak RSS MB, bare forward |")
    print("|---|---|---|")
    rss = {}
    for n in (1000, 10000):
        rss[n] = peak_rss(ckpt, n, args.batch_size)["rss_mb"], peak_rss(ckpt, n, args.batch_size, False)["rss_mb"]
        print(f"| {n} | {rss[n][0]:.0f} | {rss[n][1]:.0f} |")
    print(f"\ncapture ratio 10k/1k: {rss[10000][0] / rss[1000][0]:.3f} (goal <= 1.10); "
          f"bare forward: {rss[10000][1] / rss[1000][1]:.3f}")


if __name__ == "__main__":
    main()
