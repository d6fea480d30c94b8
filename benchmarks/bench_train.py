"""Training throughput on real QM9 batches, in two modes.

``--mode conv`` (default): the ``lee`` preset at multiplicity 16 for L=[0,1,2], [0..4], [0,3,4,5,6] and
[0..6] with ``model.conv: e3nn`` (e3nn's tensor product) and ``model.conv: fast`` (irrepprobe's exact
B-first convolution, fused kernel where it builds) side by side: the same parameters (one state_dict
loaded into both), whole training steps (forward, backward, AdamW) interleaved in one process on the
same batches, median ms per step, molecules/s, the ratio, the largest output and gradient differences,
and the achieved GFLOP/s of the fast step against this CPU's measured float32 matmul peak (FLOPs counted
by torch's FlopCounterMode on the PyTorch path of the fast convolution, i.e. the arithmetic the kernel
does, plus the rest of the step), with the compute-bound step time that implies. One 105k-molecule
epoch (QM9's 80% training split) is the step time x 3,300 batches.

``--mode fc``: for each preset (``lee`` at ls=[0,1,2], ``miller-l1``, ``miller-l0``) this times forward + backward
+ AdamW step in molecules per second, for the irrepprobe model (uvu tensor product, one weight per
path and channel per edge) and for a benchmark-only baseline of the same hidden irreps, layers,
radial basis and cutoff whose convolution is ``e3nn.o3.FullyConnectedTensorProduct(irreps_node,
irreps_sh, irreps_out, shared_weights=False)`` with per-edge weights from a radial MLP (the
published Lee et al. style), followed by the same gate. Batches are collated before timing, so
data loading is not counted; each model runs 2 warm-up steps, then ``--steps`` timed steps on the
same batches (the baseline ``--baseline-steps``, by default the same; lower it if the baseline is
very slow), and the median step gives the rate. Goal: at least 5x the baseline throughput on CPU.
A busy machine distorts the rates badly (see the printed warning); ``--threads 1`` suffers least.

Run:  python benchmarks/bench_train.py [--mode conv] [--ls-sets "0,1,2;0,1,2,3,4"] [--rounds 3]
                                       [--mul 16] [--batch-size 32] [--threads N]
      python benchmarks/bench_train.py --mode fc [--device cpu|cuda] [--steps 10] [--baseline-steps STEPS]
                                       [--batch-size 32] [--presets lee,miller-l1,miller-l0]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import e3nn
import torch
from _common import cpu_model
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn

from irrepprobe.data import loader, radius_graph
from irrepprobe.models import build_model, hidden_irreps, num_parameters, preset
from irrepprobe.models.layers import gated
from irrepprobe.train.loop import prepare_data

WARMUP = 2


class FCInteraction(nn.Module):
    """Baseline convolution: fully connected tensor product with per-edge weights from a radial MLP,
    sum aggregation / sqrt(avg_neighbors), self-connection, gate, residual (as irrepprobe's)."""

    def __init__(self, irreps_in, irreps_sh, irreps_out, n_basis, radial_hidden, avg_neighbors):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.gate, irreps_pre = gated(self.irreps_out)
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_in, irreps_sh, irreps_pre, shared_weights=False)
        self.radial = FullyConnectedNet([n_basis, radial_hidden, self.tp.weight_numel], nn.functional.silu)
        self.self_connection = o3.Linear(self.irreps_in, irreps_pre)
        self.avg_neighbors = avg_neighbors
        self.residual = self.irreps_in == self.irreps_out

    def forward(self, x, sh, radial, edge_index):
        src, dst = edge_index
        messages = self.tp(x[src], sh, self.radial(radial))
        agg = torch.zeros(x.shape[0], messages.shape[1], dtype=x.dtype, device=x.device)
        agg.index_add_(0, dst, messages)
        out = self.gate(agg / math.sqrt(self.avg_neighbors) + self.self_connection(x))
        return x + out if self.residual else out


class Baseline(nn.Module):
    """irrepprobe's network with every Interaction replaced by FCInteraction (same embedding,
    spherical harmonics, Bessel basis, readout and pooling)."""

    def __init__(self, config):
        super().__init__()
        m = config.model
        self.net = build_model(config)  # reused for embedding, radial basis and readout
        hidden = hidden_irreps(config.muls(), m.parity)
        layers, irreps = [], self.net.embedding.irreps_out
        for _ in range(m.layers):
            layers.append(FCInteraction(irreps, self.net.irreps_sh, hidden, m.n_basis, m.radial_hidden,
                                        float(m.avg_neighbors)))
            irreps = layers[-1].irreps_out
        self.net.layers = nn.ModuleList(layers)

    def forward(self, data):
        return self.net(data)


def throughput(model, batches, steps, device) -> float:
    """Molecules per second of the median training step, over ``steps`` steps after WARMUP steps
    (the median rather than the mean, so that a moment of other work on the machine does not count)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    model.train()
    rates = []
    for k, batch in enumerate(batches[:WARMUP + steps]):
        t0 = time.perf_counter()
        loss = (model(batch) - batch.y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k >= WARMUP:
            rates.append(batch.num_graphs / (time.perf_counter() - t0))
    return statistics.median(rates)


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes, from /proc/stat over ``seconds``."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return (1 - (i1 - i0) / max(t1 - t0, 1)) * (os.cpu_count() or 1)



def matmul_peak(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Float32 GFLOP/s of a square matmul, the best of ``reps``: what this CPU can do at best."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_flops(model, batch) -> float:
    """FLOPs of one training step counted by torch (matmul-like ops), the fast convolution on its
    PyTorch path (the same arithmetic as the kernel, which FlopCounterMode cannot see)."""
    from torch.utils.flop_counter import FlopCounterMode

    from irrepprobe.models import kernel

    saved = kernel._ext, kernel._why_not
    kernel._ext, kernel._why_not = None, "counting"
    try:
        with FlopCounterMode(display=False) as counter:
            model(batch).sum().backward()
    finally:
        kernel._ext, kernel._why_not = saved
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def conv_mode(args) -> None:
    from irrepprobe.models import kernel

    threads = torch.get_num_threads()
    busy = busy_cores()
    peak = matmul_peak(threads)
    kernel.extension()
    rows, cutoff = [], None
    for ls in [[int(v) for v in part.split(",")] for part in args.ls_sets.split(";")]:
        cfg = preset("lee")
        cfg.set("model.ls", ls)
        cfg.set("model.mul", args.mul)
        cfg.set("data.subset", 2000)
        cfg.validate()
        qm9, y, split = prepare_data(cfg)
        cfg.model.avg_neighbors = 10.0
        batches = [b for _, b in zip(range(WARMUP + args.rounds), loader(qm9, y, split["train"], args.batch_size))]
        models = {}
        for conv in ("e3nn", "fast"):
            cfg.model.conv = conv
            torch.manual_seed(0)
            models[conv] = build_model(cfg)
        models["fast"].load_state_dict(models["e3nn"].state_dict())
        # exactness on the first batch: outputs and parameter gradients
        outs, grads = {}, {}
        for conv, model in models.items():
            outs[conv] = model(batches[0])
            grads[conv] = torch.autograd.grad(outs[conv].sum(), list(model.parameters()))
        d_out = float((outs["e3nn"] - outs["fast"]).abs().max())
        d_grad = max(float((a - b).abs().max()) for a, b in zip(grads["e3nn"], grads["fast"]))
        flops = step_flops(models["fast"], batches[0])
        opts = {c: torch.optim.AdamW(m.parameters(), lr=1e-3) for c, m in models.items()}
        times = {"e3nn": [], "fast": []}
        for k, batch in enumerate(batches):  # interleaved: e3nn and fast take turns on the same batch
            for conv in ("e3nn", "fast"):
                model, opt = models[conv], opts[conv]
                t0 = time.perf_counter()
                loss = (model(batch) - batch.y).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if k >= WARMUP:
                    times[conv].append(time.perf_counter() - t0)
        ms = {c: 1e3 * statistics.median(v) for c, v in times.items()}
        edges = radius_graph(batches[0].pos, batches[0].batch, cfg.model.cutoff).shape[1]
        cutoff = cfg.model.cutoff
        bound = flops / (peak * 1e9) * 1e3
        rows.append(f"| {ls} | {num_parameters(models['fast']):,} | {edges:,} | {ms['e3nn']:.0f} | {ms['fast']:.0f} | "
                    f"{args.batch_size / ms['e3nn'] * 1e3:.0f} | {args.batch_size / ms['fast'] * 1e3:.0f} | "
                    f"**{ms['e3nn'] / ms['fast']:.2f}x** | {d_out:.1e} (of {float(outs['e3nn'].abs().max()):.0f}) | "
                    f"{d_grad:.1e} | {flops / (ms['fast'] / 1e3) / 1e9:.1f} | {bound:.0f} ({ms['fast'] / bound:.1f}x) | "
                    f"{ms['e3nn'] * 3300 / 6e4:.1f} / {ms['fast'] * 3300 / 6e4:.1f} |")
        print(f"[{ls}] done", file=sys.stderr, flush=True)
    why = kernel.why_not()
    print(f"\nSetup: CPU {cpu_model()}, {threads} torch threads, torch {torch.__version__}, e3nn {e3nn.__version__}, "
          f"float32, lee preset at mul {args.mul} (3 layers, {cutoff} A cutoff, 20 Bessel functions), batch "
          f"{args.batch_size} real QM9 molecules, median of {args.rounds} interleaved training steps after {WARMUP} "
          f"warm-up, fast path: {'fused C++ kernel' if why is None else 'PyTorch (' + why + ')'}; matmul peak "
          f"{peak:.0f} GFLOP/s (float32 2048^3, same threads); {busy:.1f} of {os.cpu_count()} cores busy with other "
          "work at the start\n")
    if busy + threads > (os.cpu_count() or 1) + 0.3:
        print("WARNING: other processes held the CPU cores this benchmark needs; the times are not reliable.\n")
    print("| L | params | edges | e3nn ms/step | fast ms/step | e3nn mol/s | fast mol/s | speed-up | max out diff "
          "| max grad diff | fast GFLOP/s | compute bound ms (fast / bound) | 105k epoch min (e3nn / fast) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
    print("\n".join(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="conv", choices=["conv", "fc"])
    p.add_argument("--ls-sets", default="0,1,2;0,1,2,3,4;0,3,4,5,6;0,1,2,3,4,5,6")
    p.add_argument("--mul", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--baseline-steps", type=int, default=None, help="default: --steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--presets", default="lee,miller-l1,miller-l0")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "conv":
        return conv_mode(args)
    device = torch.device(args.device)
    args.baseline_steps = args.baseline_steps or args.steps
    n_batches = WARMUP + max(args.steps, args.baseline_steps)
    busy = busy_cores()

    rows, edges = [], {}
    for name in args.presets.split(","):
        cfg = preset(name)
        if name == "lee":
            cfg.set("model.ls", [0, 1, 2])
        cfg.model.conv = "e3nn"  # the tensor product this comparison was made with
        cfg.set("data.subset", max(2000, 2 * n_batches * args.batch_size))
        cfg.validate()
        qm9, y, split = prepare_data(cfg)
        cfg.model.avg_neighbors = 10.0
        batches = [b.to(device) for _, b in zip(range(n_batches), loader(qm9, y, split["train"], args.batch_size))]
        m = cfg.model
        edges[m.cutoff] = sum(radius_graph(b.pos, b.batch, m.cutoff).shape[1] for b in batches) / len(batches)

        torch.manual_seed(0)
        ours = build_model(cfg).to(device)
        ours_rate = throughput(ours, batches, args.steps, device)
        base = Baseline(cfg).to(device)
        base_rate = throughput(base, batches, args.baseline_steps, device)
        mul = m.mul if not isinstance(m.mul, dict) else "/".join(str(m.mul[l]) for l in sorted(m.mul))
        rows.append(f"| {name} | {sorted(m.ls)} | {mul} | {m.cutoff} | {num_parameters(ours):,} | "
                    f"{ours_rate:.1f} | {num_parameters(base):,} | {base_rate:.1f} | {ours_rate / base_rate:.1f}x |")
        print(f"[{name}] done", file=sys.stderr, flush=True)

    threads = torch.get_num_threads()
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    print("\nGoal: irrepprobe at least 5x the FullyConnectedTensorProduct baseline's throughput on CPU.")
    print(f"Setup: device {device}{gpu}, CPU {cpu_model()}, {threads} torch threads, torch {torch.__version__}, "
          f"e3nn {e3nn.__version__}, batch size {args.batch_size} molecules, median of {args.steps} steps "
          f"(baseline {args.baseline_steps}) after {WARMUP} warm-up, average edges per batch "
          + ", ".join(f"{e:.0f} at {c} A" for c, e in edges.items())
          + f", {busy:.1f} of {os.cpu_count()} cores busy with other work at the start\n")
    if busy + threads > (os.cpu_count() or 1) + 0.3:
        print("WARNING: other processes held the CPU cores this benchmark needs; the rates are not reliable.\n")
    print("| preset | ls | mul | cutoff (A) | params (ours) | ours mol/s | baseline params | baseline mol/s "
          "| ours/baseline |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
