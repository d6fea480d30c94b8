"""The fused uvu kernel (``csrc/uvu.cpp``): built with the machine's C++ compiler on first use and cached
by torch under a name tied to this CPU, the kernel source and torch's version (it is compiled for this
CPU's instruction set). Without a compiler, or with ``IRREPPROBE_NO_KERNEL=1``, the same function is
computed in plain PyTorch, and one line says so."""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "uvu.cpp"
_ext, _why_not = None, None
# a build takes about a minute; torch's lock file of one older than this was left by a killed build, and
# torch would wait on it forever
STALE_S = 600


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

            name = f"irrepprobe_uvu_{_cpu_tag()}"
            wait_for_build(_build_dir(name) / "lock")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _ext = load(name=name, sources=[str(SOURCE)],
                            extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                            verbose=False)
        except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a failed build: all mean "fall back"
            text = str(e).strip().splitlines()
            _why_not = f"{type(e).__name__}: {text[-1] if text else ''}"[:200]
    if _ext is None:
        print(f"irrepprobe: no compiled uvu kernel ({_why_not}); using the PyTorch path of the fast "
              "convolution (same results, slower)", file=sys.stderr)
    return _ext


def _build_dir(name: str) -> Path:
    from torch.utils import cpp_extension

    try:
        return Path(cpp_extension._get_build_directory(name, verbose=False))
    except (AttributeError, TypeError):  # torch moved it: its public root, without the Python/CUDA folder
        return Path(cpp_extension.get_default_build_root()) / name


def wait_for_build(lock: Path, stale_s: float = STALE_S, poll_s: float = 1.0) -> None:
    """Wait while another process builds the kernel (torch's ``lock`` file exists); remove the lock once it
    is older than ``stale_s``: a build killed half-way (Ctrl-C in the first minute) leaves it behind."""
    told = False
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > stale_s:
            lock.unlink(missing_ok=True)
            print(f"irrepprobe: removed {lock}, left {age / 60:.0f} min ago by a kernel build that did not finish",
                  file=sys.stderr)
            return
        if not told:
            print(f"irrepprobe: waiting for another process to finish building the uvu kernel ({lock})",
                  file=sys.stderr)
            told = True
        time.sleep(poll_s)


def why_not() -> str | None:
    extension()
    return _why_not


class Graph:
    """Edges by destination (CSR row pointers), built once per forward pass."""

    def __init__(self, edge_index: torch.Tensor, n: int):
        src, dst = edge_index
        self.src = src.contiguous()
        self.by_dst = torch.argsort(dst, stable=True)
        self.rowptr = torch.zeros(n + 1, dtype=torch.long, device=dst.device)
        self.rowptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n), 0)


def _blocks(plan, x):
    """Each input block of ``x`` [atoms, mul_ir] as [atoms, d1, mul], channels innermost."""
    N = x.shape[0]
    return [b.view(N, mul, d1).transpose(1, 2).contiguous() for b, (mul, d1) in
            zip(torch.split(x, plan.in1_splits, dim=1), plan.in1_shapes)]


class _FusedLayer(torch.autograd.Function):
    """All groups of one layer: reads x and the weights in e3nn's layouts, writes the messages' lanes."""

    @staticmethod
    def forward(ctx, x, w, plan, B, graph):
        ext, xs, N = extension(), _blocks(plan, x), x.shape[0]
        lanes = [x.new_empty(N, ir.dim, K) for ir, _, K in plan.lanes]
        for n, (a, mul, d1, d3, *_rest, lane, ostride) in enumerate(plan.groups):
            ext.uvu_fwd(xs[a], B[n], w, getattr(plan, f"wcol{n}"), getattr(plan, f"ocol{n}"), graph.src,
                        graph.by_dst, graph.rowptr, lanes[lane].view(N, -1), d3, ostride)
        ctx.save_for_backward(w, *xs)  # the channels-innermost blocks, not x: backward needs them as they are
        ctx.plan, ctx.B, ctx.graph = plan, B, graph
        return tuple(lanes)

    @staticmethod
    def backward(ctx, *G):
        w, *xs = ctx.saved_tensors
        plan, g, ext = ctx.plan, ctx.graph, extension()
        N = xs[0].shape[0]
        G = [gl.contiguous().view(N, -1) for gl in G]
        gw = torch.empty_like(w)  # every weight column belongs to exactly one group's paths
        # the input gradient per block, accumulated by the kernel in one buffer per thread
        gxt = [xb.new_zeros(torch.get_num_threads(), *xb.shape) for xb in xs]
        for n, (a, mul, d1, d3, *_rest, lane, ostride) in enumerate(plan.groups):
            ext.uvu_bwd(G[lane], xs[a], ctx.B[n], w, getattr(plan, f"wcol{n}"), getattr(plan, f"ocol{n}"),
                        g.src, g.by_dst, g.rowptr, gw, gxt[a], d3, ostride)
        gx = torch.cat([gb.sum(0).transpose(1, 2).reshape(N, -1) for gb in gxt], dim=1)
        return gx, gw, None, None, None


def fused_layer(plan, x, weight, B, edge_index, cache: dict):
    """The layer's aggregated messages (lanes) from the kernel, or None where it cannot run: not built, not on
    the CPU, or B needing a gradient (forces need the gradient through the geometry)."""
    if x.device.type != "cpu" or any(b.requires_grad for b in B) or extension() is None:
        return None
    if "graph" not in cache:
        cache["graph"] = Graph(edge_index, x.shape[0])
    return list(_FusedLayer.apply(x, weight.contiguous(), plan, B, cache["graph"]))
