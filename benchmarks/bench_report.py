"""The whole report, timed per stage, on the two cases the goals name.

* ``example``: the shipped example model (``lee``: L=[0,1,2], mul 16, 3 layers) over its 500 test
  molecules, as README's main job runs it (``irrepprobe capture && irrepprobe report capture-example``).
  Goal: at most 40 s for the report.
* ``sevenn``: SevenNet-0 (842,623 parameters, 5 layers) over the first 500 molecules of QM9's test split
  (no label of its PBE energy there: ablation scores the shift of its energy and forces). Goal: at most
  5 minutes for the report, energy and forces scored.

Both with the report's defaults (5 untrained controls, UMAP of up to 2,000 structures, zero/mean/resample
ablation on up to 1,000 structures with the sequential rule from 64). ``--full`` turns the sequential rule
off (every ablation on every structure), to compare verdicts. Run on an idle machine.

    python benchmarks/bench_report.py [--case example|sevenn|both] [--molecules 500] [--full] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import cpu_model


def run(case: str, molecules: int, out: Path, first_look, quantity: str):
    from irrepprobe.adapters import load_model
    from irrepprobe.capture import capture, capture_checkpoint, resolve_data
    from irrepprobe.examples import example_checkpoint
    from irrepprobe.study import make_report

    t0 = time.time()
    if case == "example":
        cap = capture_checkpoint(example_checkpoint(), subset=molecules, out=out / "capture", device="cpu")
    else:
        model = load_model("7net-0", "sevenn", trust=True)
        cap = capture(model, resolve_data("qm9:test", model, subset=molecules), out=out / "capture", trusted=True)
    capture_s = time.time() - t0
    t0 = time.time()
    res = make_report(cap, out=out / "report", device="cpu", first_look=first_look, quantity=quantity,
                      log=lambda *a: None)
    return cap, res, capture_s, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="both", choices=["example", "sevenn", "both"])
    ap.add_argument("--molecules", type=int, default=500)
    ap.add_argument("--full", action="store_true", help="no sequential rule: every ablation on every structure")
    ap.add_argument("--quantity", default="both", choices=["energy", "forces", "both"])
    ap.add_argument("--check-full", action="store_true",
                    help="after the timed report, measure utilisation again with every ablation on every structure "
                         "(no sequential rule) and compare the verdicts block by block")
    ap.add_argument("--out", help="keep the captures and reports here (default: a temporary folder)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    busy = os.getloadavg()[0]
    root = Path(args.out or tempfile.mkdtemp(prefix="bench-report-"))
    print(f"setup: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu; "
          f"{args.molecules} QM9 test molecules; sequential rule {'off' if args.full else 'from 64'}; "
          f"quantity {args.quantity}; "
          f"load average {busy:.1f} at the start")
    for case in (["example", "sevenn"] if args.case == "both" else [args.case]):
        cap, res, capture_s, report_s = run(case, args.molecules, root / case, None if args.full else 64,
                                            args.quantity)
        t = res["timings"]
        util = res["tables"]["utilisation"]
        print()
        print(f"### {case}: {cap.meta['model_summary'][:120]}...")
        print()
        print("| stage | seconds |")
        print("|---|---:|")
        print(f"| capture (not part of the report) | {capture_s:.1f} |")
        for r in t.itertuples():
            print(f"| {r.stage} | {r.seconds:.1f} |")
        print(f"| figures, tables, documents | {report_s - t['seconds'].sum():.1f} |")
        print(f"| **report total** | **{report_s:.1f}** |")
        print()
        q = ", ".join(sorted(set(util["quantity"])))
        runs = util[util["intervention"] != "removed"]
        print(f"ablations: {len(runs)} rows ({q}); structures per row: median {runs['structures'].median():.0f}, "
              f"max {runs['structures'].max()}; unused: "
              + (", ".join(f"{p} {b}" for p, b in res["verdict"]["unused"]) or "none")
              + "; orders to drop: " + (", ".join(f"l={l}" for l in res["verdict"]["drop"]) or "none"))
        print(f"report: {res['report_html']}")
        if args.check_full:
            compare_full(cap, res, root / case, args.quantity)


def compare_full(cap, res, out: Path, quantity: str):
    """The verdicts of the timed report against every ablation on every structure."""
    from irrepprobe.study import make_report

    t0 = time.time()
    full = make_report(cap, out=out / "report-full", device="cpu", first_look=None, quantity=quantity, controls=1,
                       map_method="pca", log=lambda *a: None)
    seconds = full["timings"].set_index("stage").filter(like="utilisation", axis=0)["seconds"].sum()
    a = res["verdict"]["table"].set_index(["point", "block"])["verdict"]
    b = full["verdict"]["table"].set_index(["point", "block"])["verdict"]
    same = (a == b.reindex(a.index))
    print(f"every ablation on every structure: utilisation {seconds:.1f} s ({time.time() - t0:.1f} s with the rest); "
          f"verdicts agree on {int(same.sum())} of {len(same)} blocks"
          + ("" if same.all() else "; differ: " + ", ".join(f"{p} {k}: {a[(p, k)]} vs {b[(p, k)]}"
                                                          for p, k in same[~same].index))
          + f"; orders to drop {res['verdict']['drop']} vs {full['verdict']['drop']}")


if __name__ == "__main__":
    main()
