"""Building blocks of the network family. Every block takes irreps in its constructor and exposes
``irreps_in`` / ``irreps_out`` so that capture hooks can find and slice its output."""
from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from .conv import UVUPlan


class BesselBasis(nn.Module):
    """sqrt(2/c) sin(n pi r / c) / r times a smooth polynomial envelope that reaches 0 at the cutoff."""

    def __init__(self, n: int, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff, self.p = cutoff, p
        self.register_buffer("freq", torch.arange(1, n + 1) * math.pi / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r[:, None]
        x = r / self.cutoff
        p = self.p
        envelope = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        envelope = envelope * (x < 1)
        return math.sqrt(2 / self.cutoff) * torch.sin(self.freq * r) / r * envelope


def gated(irreps: o3.Irreps) -> tuple[Gate, o3.Irreps]:
    """A gate whose output is ``irreps``: scalars pass through an activation, l > 0 blocks are
    scaled by sigmoid gates. Returns the gate and the irreps it needs as input."""
    scalars = o3.Irreps([(m, ir) for m, ir in irreps if ir.l == 0])
    rest = o3.Irreps([(m, ir) for m, ir in irreps if ir.l > 0])
    acts = {1: nn.functional.silu, -1: torch.tanh}
    gate = Gate(
        scalars, [acts[ir.p] for _, ir in scalars],
        o3.Irreps(f"{rest.num_irreps}x0e") if rest.num_irreps else o3.Irreps(""),
        [torch.sigmoid] if rest.num_irreps else [],
        rest,
    )
    return gate, gate.irreps_in


CONVS = ("auto", "e3nn", "fast")


class Interaction(nn.Module):
    """One equivariant convolution: per-edge uvu tensor product of node features with the spherical
    harmonics of the edge vector, weights from a radial MLP, sum aggregation divided by
    sqrt(avg_neighbors), a linear mix, an optional self-connection, gate and residual.

    ``conv`` picks how the product and the sum are computed, never what: ``e3nn`` (e3nn's tensor
    product, then index_add), ``fast`` / ``auto`` (:mod:`irrepprobe.models.conv`: the same function,
    with a compiled kernel where one can be built). Parameters and checkpoints are the same."""

    def __init__(
        self,
        irreps_in,
        irreps_sh,
        irreps_out,
        n_basis: int,
        radial_hidden: int,
        avg_neighbors: float,
        gate: bool = True,
        self_connection: bool = True,
        residual: bool = True,
        conv: str = "auto",
    ):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {', '.join(CONVS)}, got {conv!r}")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.irreps_out = o3.Irreps(irreps_out)
        self.avg_neighbors = avg_neighbors

        allowed = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in allowed:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir))
        mid = o3.Irreps(mid)
        mid_sorted, perm, _ = mid.sort()
        instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
        self.tp = o3.TensorProduct(
            self.irreps_in, self.irreps_sh, mid_sorted, instructions,
            shared_weights=False, internal_weights=False,
        )
        self.radial = FullyConnectedNet([n_basis, radial_hidden, self.tp.weight_numel], nn.functional.silu)
        self.conv = conv
        self.plan = None if conv == "e3nn" else UVUPlan(self.tp)
        if gate:
            self.gate, irreps_pre = gated(self.irreps_out)
        else:
            self.gate, irreps_pre = None, self.irreps_out
        self.linear = o3.Linear(mid_sorted.simplify(), irreps_pre)
        self.self_connection = o3.Linear(self.irreps_in, irreps_pre) if self_connection else None
        self.residual = residual and self.irreps_in == self.irreps_out
        # the layer's own contribution before the residual adds it to the stream: a named point for
        # capture and ablation (no parameters, so checkpoints are unchanged)
        self.update = nn.Identity()

    def forward(self, x, sh, radial, edge_index, cache: dict | None = None):
        """``cache``: a dict shared by the layers of one forward pass (the fast path keeps the edges'
        B tensors and graph there)."""
        weight = self.radial(radial)
        if self.plan is not None:
            scale = 1 / math.sqrt(self.avg_neighbors)
            lanes = self.plan(x, sh, weight, edge_index, cache, fused=True)
            if self.linear._forward_hooks or self.linear._forward_pre_hooks:  # a hook sees e3nn's layout
                out = self.linear(self.plan.e3nn_layout(lanes) * scale)
            else:
                out = self.plan.linear(lanes, self.linear, scale)
        else:
            src, dst = edge_index
            messages = self.tp(x[src], sh, weight)
            agg = torch.zeros(x.shape[0], messages.shape[1], dtype=x.dtype, device=x.device)
            agg.index_add_(0, dst, messages)
            out = self.linear(agg / math.sqrt(self.avg_neighbors))
        if self.self_connection is not None:
            out = out + self.self_connection(x)
        if self.gate is not None:
            out = self.gate(out)
        out = self.update(out)
        return x + out if self.residual else out


class Readout(nn.Module):
    """Per-atom map from the last layer's irreps to the target irreps: linear, gate, linear.
    A linear map only connects equal irreps, so a scalar target reads the 0e block alone."""

    def __init__(self, irreps_in, irreps_out, hidden: int):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        available = {ir for _, ir in self.irreps_in}
        missing = [str(ir) for _, ir in self.irreps_out if ir not in available]
        if missing:
            from ..errors import IrrepprobeError

            raise IrrepprobeError(
                f"the model cannot produce {self.irreps_out}: its last layer ({self.irreps_in}) "
                f"has no {', '.join(missing)} block"
            )
        hidden_irreps = o3.Irreps([(hidden, ir) for _, ir in self.irreps_out]).simplify()
        self.gate, irreps_pre = gated(hidden_irreps)
        self.linear1 = o3.Linear(self.irreps_in, irreps_pre)
        self.linear2 = o3.Linear(hidden_irreps, self.irreps_out)

    def forward(self, x):
        return self.linear2(self.gate(self.linear1(x)))
