"""Capture overhead and memory, for any model the adapters load.

1. Time of ``run_capture`` (hooks on the adapter's default points, streaming reductions) over QM9
   molecules vs the bare forward pass (the adapter's ``predict``, with gradients on where the family
   needs them) over the same pre-built batches, interleaved, as a ratio; goal <= 1.10x.
2. Peak resident memory of a capture of 1,000 and of 10,000 molecules (each in a fresh process,
   without --save-nodes); goal: within 10% of each other. ``--no-memory`` skips it.

    python benchmarks/bench_capture.py [MODEL] [--format auto] [--trust] [--molecules 500]
                                       [--batch-size 64] [--repeats 3] [--data qm9:test]

MODEL defaults to the example checkpoint shipped with irrepprobe; ``7net-0 --format sevenn --trust``
measures SevenNet-0. Molecules: the first N of QM9's seed-0 test split, or of ``--data`` (any file ASE
reads; e.g. for a model that knows fewer elements than QM9 has).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from _common import cpu_model


def setup(source, fmt, trust, n, batch_size, data="qm9:test"):
    from irrepprobe.adapters import load_model
    from irrepprobe.capture import choose_points, resolve_data

    model = load_model(source, fmt, trust=trust)
    if model.info.get("split"):
        model.info["split"] = None  # the same molecules for every family: QM9's own split
    structures = resolve_data(data, model, n)
    batches = list(model.adapter.batches(model, structures, batch_size))  # built once: time the model
    return model, structures, batches, choose_points(model, None)


def timing(source, fmt, trust, n, batch_size, repeats, data="qm9:test"):
    from irrepprobe.capture import Recorder

    model, structures, batches, points = setup(source, fmt, trust, n, batch_size, data)
    grad = torch.enable_grad if model.adapter.needs_grad else torch.no_grad

    def bare():
        with grad():
            for b in batches:
                model.adapter.predict(model, b).detach()

    def hooked():
        with Recorder(model.module, points, n_molecules=len(structures)) as rec, grad():
            for b in batches:
                rec.begin(b)
                model.adapter.predict(model, b).detach()
        rec.molecule_arrays()

    bare(), hooked()  # warm-up
    t_bare, t_cap = [], []
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        t = time.perf_counter(); bare(); t_bare.append(time.perf_counter() - t)
        t = time.perf_counter(); hooked(); t_cap.append(time.perf_counter() - t)
    return model, len(structures), len(points), min(t_bare), min(t_cap)


def peak_rss(source, fmt, trust, n, batch_size, hooks: bool = True) -> dict:
    code = f"""
import resource, json, sys, torch
sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
from bench_capture import setup
from irrepprobe.capture import run_capture
model, structures, batches, points = setup({source!r}, {fmt!r}, {trust}, {n}, {batch_size})
del batches
if {hooks}:
    rec, out = run_capture(model, structures, points, {batch_size})
    arrays = rec.molecule_arrays()
else:
    grad = torch.enable_grad if model.adapter.needs_grad else torch.no_grad
    with grad():
        for b in model.adapter.batches(model, structures, {batch_size}):
            model.adapter.predict(model, b).detach()
print(json.dumps({{"n": len(structures), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?")
    p.add_argument("--format", default="auto")
    p.add_argument("--trust", action="store_true")
    p.add_argument("--molecules", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--data", default="qm9:test", help="structures to time on (default qm9:test); the memory "
                   "check always uses qm9:test")
    args = p.parse_args()
    from irrepprobe.examples import example_checkpoint

    source = args.model or str(example_checkpoint())
    model, n, n_points, t_bare, t_cap = timing(source, args.format, args.trust, args.molecules, args.batch_size,
                                               args.repeats, args.data)
    print(f"setup: cpu={cpu_model()}  torch {torch.__version__}  threads={torch.get_num_threads()}  "
          f"model={source} ({model.adapter.name})  batch={args.batch_size}  points={n_points}  best of {args.repeats}")
    print()
    print("| model | molecules | bare forward s | capture s | ratio (goal <= 1.10) |")
    print("|---|---|---|---|---|")
    print(f"| {source.rsplit('/', 1)[-1]} | {n} | {t_bare:.3f} | {t_cap:.3f} | {t_cap / t_bare:.3f} |")
    if args.no_memory:
        return
    print()
    print("| molecules | peak RSS MB, capture | peak RSS MB, bare forward |")
    print("|---|---|---|")
    rss = {}
    for n in (1000, 10000):
        rss[n] = (peak_rss(source, args.format, args.trust, n, args.batch_size)["rss_mb"],
                  peak_rss(source, args.format, args.trust, n, args.batch_size, False)["rss_mb"])
        print(f"| {n} | {rss[n][0]:.0f} | {rss[n][1]:.0f} |")
    print(f"\ncapture ratio 10k/1k: {rss[10000][0] / rss[1000][0]:.3f} (goal <= 1.10); "
          f"bare forward: {rss[10000][1] / rss[1000][1]:.3f}")


if __name__ == "__main__":
    main()
