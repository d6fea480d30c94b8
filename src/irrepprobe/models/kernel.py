"""The fused uvu kernel (``csrc/uvu.cpp``): built with the machine's C++ compiler on first use and cached
by torch under a name tied to this CPU, the kernel source and torch's version (it is compiled for this
CPU's instruction set). Without a compiler, or with ``IRREPPROBE_NO_KERNEL=1``, the same function is
computed in plain PyTorch, and one line says so."""
from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "uvu.cpp"
_ext, _why_not = None, None


def _cpu_tag() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return hashlib.sha256((flags + SOURCE.read_text() + torch.__version__).encode()).hexdigest()[:12]


def extension():
    """The compiled kernel module, or None (the reason in :func:`why_not`)."""
    global _ext, _why_not
    if _ext is not None or _why_not is not None:
        return _ext
    if os.environ.get("IRREPPROBE_NO_KERNEL"):
        _why_not = "IRREPPROBE_NO_KERNEL is set"
    else:
        try:
            import warnings

            from torch.utils.cpp_extension import load

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _ext = load(name=f"irrepprobe_uvu_{_cpu_tag()}", sources=[str(SOURCE)],
                            extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                            verbose=False)
        except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a failed build: all mean "fall back"
            text = str(e).strip().splitlines()
            _why_not = f"{type(e).__name__}: {text[-1] if text else ''}"[:200]
    if _ext is None:
        print(f"irrepprobe: no compiled uvu kernel ({_why_not}); using the PyTorch path of the fast "
              "convolution (same results, slower)", file=sys.stderr)
    return _ext


def why_not() -> str | None:
    extension()
    return _why_not


class Graph:
    """Edges by destination and by source (CSR row pointers), built once per forward pass."""

    def __init__(self, edge_index: torch.Tensor, n: int):
        src, dst = edge_index
        self.src, self.dst = src.contiguous(), dst.contiguous()
        self.by_dst = torch.argsort(dst, stable=True)
        self.by_src = torch.argsort(src, stable=True)
        self.rowptr = torch.zeros(n + 1, dtype=torch.long, device=dst.device)
        self.rowptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n), 0)
        self.rowptr_src = torch.zeros(n + 1, dtype=torch.long, device=src.device)
        self.rowptr_src[1:] = torch.cumsum(torch.bincount(src, minlength=n), 0)


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, B, w, graph, d3):
        ctx.save_for_backward(x, B, w)
        ctx.graph, ctx.d3 = graph, d3
        return extension().uvu_fwd(x, B, w, graph.src, graph.by_dst, graph.rowptr, d3)

    @staticmethod
    def backward(ctx, G):
        x, B, w = ctx.saved_tensors
        g = ctx.graph
        gx, gw = extension().uvu_bwd(G.contiguous(), x, B, w, g.dst, g.by_src, g.rowptr_src, ctx.d3)
        return gx, None, gw, None, None


def _plain(x, B, w, edge_index) -> torch.Tensor:
    """What the kernel computes, in PyTorch: [atoms, C, U]."""
    src, dst = edge_index
    E, Q, U = w.shape
    C = B.shape[2]
    m = torch.bmm(x.index_select(0, src).transpose(1, 2), B)  # [E, U, C]
    m = (m.view(E, U, Q, C // Q) * w.transpose(1, 2)[..., None]).view(E, U, C)
    return m.new_zeros(x.shape[0], U, C).index_add_(0, dst, m).transpose(1, 2)


def uvu_aggregate(x, B, w, edge_index, cache: dict) -> torch.Tensor:
    """``agg[n, c, u] = sum over edges e into n of w[e, q(c), u] sum_i B[e, i, c] x[src_e, i, u]`` for x
    [atoms, d1, U], B [edges, d1, C], w [edges, Q, U]. The kernel where it is built and on the CPU and
    B needs no gradient (forces need the gradient through the geometry); else plain PyTorch."""
    d3 = B.shape[2] // w.shape[1]
    if x.device.type != "cpu" or B.requires_grad or extension() is None:
        return _plain(x, B, w, edge_index)
    if "graph" not in cache:
        cache["graph"] = Graph(edge_index, x.shape[0])
    return _Fused.apply(x.contiguous(), B, w.contiguous(), cache["graph"], d3)
