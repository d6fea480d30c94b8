"""The full report on 10,000 molecules, timed per stage.

The shipped example model (``lee``: L=[0,1,2], mul 16, 3 layers) is given the split of the whole of
QM9 (80/10/10, seed 0; 13,083 test molecules) and captured over the first 10,000 test molecules; then
``make_report`` runs with its defaults (ablation on 1,000 molecules, UMAP of 2,000). Goals: probes for
every block and every scalar target under 60 s; the whole report under 3 minutes. Some of the
molecules may have been in the example's training subset: this measures time, not error.

    python benchmarks/bench_report.py [--molecules 10000] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--molecules", type=int, default=10_000)
    ap.add_argument("--out", help="keep the capture and report here (default: a temporary folder)")
    args = ap.parse_args()

    from irrepprobe.capture import capture_checkpoint
    from irrepprobe.config import Config
    from irrepprobe.data import load_qm9, make_split
    from irrepprobe.examples import example_checkpoint
    from irrepprobe.report import make_report
    from irrepprobe.train import load_checkpoint, save_checkpoint

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-report-"))
    raw = load_checkpoint(example_checkpoint())
    cfg = Config.from_dict(raw["config"])
    cfg.data.subset = None
    split = make_split(len(load_qm9()), tuple(cfg.data.split), cfg.data.split_seed, None)
    ckpt = save_checkpoint(out / "model.pt", **{**{k: v for k, v in raw.items()
                                                    if k not in ("format", "format_version", "versions")},
                                                 "config": cfg.to_dict(), "split": split})
    t0 = time.time()
    cap = capture_checkpoint(ckpt, subset=args.molecules, out=out / "capture", device="cpu")
    capture_s = time.time() - t0
    t0 = time.time()
    res = make_report(cap, out=out / "report", device="cpu", log=lambda *a: None)
    report_s = time.time() - t0

    t = res["timings"]
    probes = t[t["stage"].str.startswith("probes")]["seconds"].sum()
    print(f"setup: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu; "
          f"model lee L=[0,1,2] mul 16, 3 layers, {len(cap.points)} points; {cap.meta['n_molecules']} molecules")
    print()
    print("| stage | seconds |")
    print("|---|---:|")
    print(f"| capture (not part of the report) | {capture_s:.1f} |")
    for r in t.itertuples():
        print(f"| {r.stage} | {r.seconds:.1f} |")
    print(f"| figures, tables, documents | {report_s - t['seconds'].sum():.1f} |")
    print(f"| **report total** | **{report_s:.1f}** |")
    print()
    print(f"probes (ridge + equivariant, {len(res['tables']['probes'])} + {len(res['tables']['probes_equivariant'])} "
          f"scores, each with 2 controls): {probes:.1f} s (goal < 60 s); whole report {report_s:.1f} s (goal < 180 s)")
    print(f"report: {res['report_html']}")


if __name__ == "__main__":
    main()
