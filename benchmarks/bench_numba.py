"""The fused uvu convolution's forward, compiled C++ (``models/csrc/uvu.cpp``) against Numba (installed with
umap-learn, needs no C++ compiler) running the plain loops (the C++ kernel also blocks columns into register
accumulators) and against the PyTorch path used when no kernel builds: is Numba a fallback worth having?

One layer of the ``lee`` preset at mul 16 and L=[0..6] (49 path groups), on one real QM9 batch of 32
molecules; per group, the median of 5 calls of each after a warm-up (Numba's JIT compile not counted),
the same inputs, outputs compared. Run on an idle machine:

    python benchmarks/bench_numba.py [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import torch
from _common import cpu_model
from e3nn import o3
from numba import njit, prange

from irrepprobe.data import loader, radius_graph
from irrepprobe.models import build_model, kernel, preset
from irrepprobe.models.kernel import Graph, _blocks
from irrepprobe.train.loop import prepare_data


@njit(parallel=True, fastmath=False, cache=False)
def numba_fwd(x, B, w, wc, oc, src, by_dst, rowptr, out):
    """out[n, oc[c] + u] = sum_{e -> n} w[e, wc[c] + u] sum_i B[e, i, c] x[src_e, i, u] (as the C++ forward)."""
    N, D1, U = x.shape
    C = B.shape[2]
    for n in prange(N):
        acc = np.zeros((C, U), dtype=x.dtype)
        t = np.empty(U, dtype=x.dtype)
        for p in range(rowptr[n], rowptr[n + 1]):
            e = by_dst[p]
            s = src[e]
            for c in range(C):
                t[:] = 0
                for i in range(D1):
                    b = B[e, i, c]
                    for u in range(U):
                        t[u] += b * x[s, i, u]
                for u in range(U):
                    acc[c, u] += w[e, wc[c] + u] * t[u]
        for c in range(C):
            for u in range(U):
                out[n, oc[c] + u] = acc[c, u]


def _median_ms(fn, reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    ext = kernel.extension()
    if ext is None:
        raise SystemExit(f"no compiled kernel to compare against ({kernel.why_not()})")
    cfg = preset("lee")
    cfg.set("model.ls", [0, 1, 2, 3, 4, 5, 6])
    cfg.set("model.mul", 16)
    cfg.set("data.subset", 2000)
    cfg.validate()
    qm9, y, split = prepare_data(cfg)
    cfg.model.avg_neighbors = 10.0
    batch = next(iter(loader(qm9, y, split["train"], 32)))
    torch.manual_seed(0)
    layer = build_model(cfg).layers[1]
    plan = layer.plan
    ei = radius_graph(batch.pos, batch.batch, cfg.model.cutoff)
    sh = o3.spherical_harmonics(layer.irreps_sh, batch.pos[ei[0]] - batch.pos[ei[1]], True, "component")
    N, E = batch.pos.shape[0], ei.shape[1]
    x = torch.randn(N, layer.irreps_in.dim)
    w = torch.randn(E, layer.tp.weight_numel)
    B, graph, xs = plan.basis(sh, {}), Graph(ei, N), _blocks(plan, x)
    tot = {"cpp": 0.0, "numba": 0.0}
    flops, worst = 0, 0.0
    for n, (a, mul, d1, d3, Q, *_rest, lane, ostride) in enumerate(plan.groups):
        ir, _, K = plan.lanes[lane]
        wcol, ocol = getattr(plan, f"wcol{n}"), getattr(plan, f"ocol{n}")
        cols = torch.arange(Q * d3)
        wc = wcol[cols // d3].numpy()
        oc = (ocol[cols // d3] + (cols % d3) * ostride).numpy()
        out_c, out_n = torch.zeros(N, ir.dim * K), np.zeros((N, ir.dim * K), dtype=np.float32)
        args_n = (xs[a].numpy(), B[n].numpy(), w.numpy(), wc, oc, graph.src.numpy(), graph.by_dst.numpy(),
                  graph.rowptr.numpy(), out_n)

        args_c = (xs[a], B[n], w, wcol, ocol, graph.src, graph.by_dst, graph.rowptr, out_c, d3, ostride)

        def cpp(args=args_c):
            ext.uvu_fwd(*args)

        def nb(args=args_n):
            numba_fwd(*args)

        cpp(), nb()
        tot["cpp"] += _median_ms(cpp)
        tot["numba"] += _median_ms(nb)
        flops += 2 * E * Q * d3 * d1 * mul
        worst = max(worst, float(np.abs(out_c.numpy() - out_n).max() / max(np.abs(out_n).max(), 1e-30)))
    torch_ms = _median_ms(lambda: plan(x, sh, w, ei, {}, fused=False))
    print(f"\nSetup: CPU {cpu_model()}, {torch.get_num_threads()} torch threads / {numba.get_num_threads()} Numba "
          f"threads, torch {torch.__version__}, numba {numba.__version__}, float32, lee preset mul 16 L=[0..6], "
          f"layer 1 ({len(plan.groups)} groups), one QM9 batch of 32 ({N} atoms, {E:,} edges), median of 5 calls "
          f"per group after a warm-up; largest relative output difference {worst:.1e}\n")
    print("| forward of one layer | ms | GFLOP/s | vs C++ |")
    print("|---|---:|---:|---:|")
    tot["torch"] = torch_ms
    for name, label in (("cpp", "C++ kernel (uvu.cpp), per group"), ("numba", "Numba, plain loops, per group"),
                        ("torch", "PyTorch path (no kernel), whole layer incl. B")):
        print(f"| {label} | {tot[name]:.1f} | {flops / tot[name] / 1e6:.0f} | {tot[name] / tot['cpp']:.2f}x |")


if __name__ == "__main__":
    main()
