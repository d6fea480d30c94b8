"""The uvu convolution of :class:`~irrepprobe.models.layers.Interaction`, computed exactly but faster
than e3nn's generic tensor product ("B-first").

For a path p = (l1, l2, l3) of the uvu product of node features x with the edge's spherical harmonics Y:

    msg_p[e, u, k] = alpha_p w[e, p, u] sum_ij C_p[i, j, k] x[src_e, u, i] Y_l2[e, j]
                   = w[e, p, u] sum_i x[src_e, u, i] B_p[e, i, k],   B_p[e] = alpha_p sum_j C_p[:, j, :] Y_l2[e, j]

B depends on the geometry only: it is shared by every channel and, within one forward pass, by every
layer. Paths from one input block to one output irrep differ only in l2, so they are stacked into one
group and computed by one batched matmul (the PyTorch path) or by a fused C++ kernel that accumulates
each destination atom's sum directly, channels as vector lanes, never building the [edges, messages]
tensor (:mod:`irrepprobe.models.kernel`). Only the aggregated [atoms, ...] tensor is permuted into e3nn's
layout, so the layer's own Linear, self-connection and gate, its parameters and its checkpoints are
unchanged."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from e3nn import o3
from torch import nn


class UVUPlan(nn.Module):
    """Bookkeeping for one ``o3.TensorProduct`` in uvu mode with per-edge weights and a second input of
    multiplicity 1 per irrep (the spherical harmonics). No parameters; its buffers are not saved."""

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        i1, i2, io = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        if not all(ins.connection_mode == "uvu" and ins.has_weight for ins in tp.instructions):
            raise ValueError("UVUPlan needs uvu instructions with weights")
        if not all(mul == 1 for mul, _ in i2):
            raise ValueError("UVUPlan needs a second input of multiplicity 1 per irrep")
        w_off, off = [], 0
        for ins in tp.instructions:
            w_off.append(off)
            off += math.prod(ins.path_shape)
        groups = OrderedDict()
        for k, ins in enumerate(tp.instructions):
            groups.setdefault((ins.i_in1, io[ins.i_out].ir), []).append(k)
        self.in1_splits = [mul * ir.dim for mul, ir in i1]
        self.in1_shapes = [(mul, ir.dim) for mul, ir in i1]
        self.out_dim = io.dim
        sh_slices, out_slices = i2.slices(), io.slices()
        self.groups = []  # (input block, mul, d1, d3, paths, sh columns lo:hi, cache key)
        w_uq, mid_of_ours = [], []
        for n, ((a, ir3), ks) in enumerate(groups.items()):
            mul, ir1 = i1[a]
            d1, d3, Q = ir1.dim, ir3.dim, len(ks)
            lo = min(sh_slices[tp.instructions[k].i_in2].start for k in ks)
            hi = max(sh_slices[tp.instructions[k].i_in2].stop for k in ks)
            C = torch.zeros(hi - lo, d1, Q, d3, dtype=torch.float64)
            for q, k in enumerate(ks):
                ins = tp.instructions[k]
                s = sh_slices[ins.i_in2]
                cg = o3.wigner_3j(ir1.l, i2[ins.i_in2].ir.l, ir3.l, dtype=torch.float64)  # [d1, d2, d3]
                C[s.start - lo:s.stop - lo, :, q, :] = ins.path_weight * cg.permute(1, 0, 2)
            self.register_buffer(f"C{n}", C.reshape(hi - lo, d1 * Q * d3), persistent=False)
            # for the kernel: where path q's weights and outputs start in e3nn's layouts (channel u at +u
            # and +u*d3), and the gather of this group's output gradient into [atoms, (q, k), u]
            ocol = [out_slices[tp.instructions[k].i_out].start for k in ks]
            self.register_buffer(f"wcol{n}", torch.tensor([w_off[k] for k in ks]), persistent=False)
            self.register_buffer(f"ocol{n}", torch.tensor(ocol), persistent=False)
            self.register_buffer(f"gidx{n}", torch.tensor([ocol[q] + u * d3 + k for q in range(Q) for k in range(d3)
                                                           for u in range(mul)]), persistent=False)
            # B of one group depends on (l1, l3, the sh columns, the path weights): layers share it
            key = (ir1.l, ir3.l, lo, hi, tuple(round(tp.instructions[k].path_weight, 12) for k in ks),
                   tuple(i2[tp.instructions[k].i_in2].ir.l for k in ks))
            self.groups.append((a, mul, d1, d3, Q, lo, hi, key))
            w_uq += [w_off[k] + u for u in range(mul) for k in ks]  # per-edge weights in [u][q] order
            # our message layout per group is [u, q, k]; e3nn's column for each
            mid_of_ours += [ocol[q] + u * d3 + m for u in range(mul) for q in range(Q) for m in range(d3)]
        if sorted(mid_of_ours) != list(range(io.dim)):
            raise ValueError("the tensor product's outputs are not covered exactly once by its paths")
        inv = torch.empty(io.dim, dtype=torch.long)
        inv[torch.tensor(mid_of_ours)] = torch.arange(io.dim)
        self.register_buffer("mid_perm", inv, persistent=False)
        self.register_buffer("w_uq", torch.tensor(w_uq), persistent=False)
        self.w_splits = [mul * Q for (a, mul, d1, d3, Q, *_rest) in self.groups]

    def basis(self, sh: torch.Tensor, cache: dict) -> list[torch.Tensor]:
        """Per group, B [edges, d1, paths * d3]; from ``cache`` when another layer built it already."""
        out = []
        for n, (a, mul, d1, d3, Q, lo, hi, key) in enumerate(self.groups):
            if key not in cache:
                C = getattr(self, f"C{n}").to(sh.dtype)
                cache[key] = (sh[:, lo:hi] @ C).view(sh.shape[0], d1, Q * d3)
            out.append(cache[key])
        return out

    def forward(self, x, sh, weight, edge_index, cache: dict | None = None, fused: bool = False):
        """Aggregated messages [atoms, tp.irreps_out.dim] in e3nn's layout: sum over each atom's incoming
        edges of ``tp(x[src], sh, weight)``. ``fused``: the compiled kernel where it can run."""
        from .kernel import fused_layer

        cache = {} if cache is None else cache
        B = self.basis(sh, cache)
        if fused:
            out = fused_layer(self, x, weight, B, edge_index, cache)
            if out is not None:
                return out
        src, dst = edge_index
        E, N = src.numel(), x.shape[0]
        xb = torch.split(x, self.in1_splits, dim=1)
        w = torch.split(weight.index_select(1, self.w_uq), self.w_splits, dim=1)
        aggs, gathered = [], {}
        for (a, mul, d1, d3, Q, lo, hi, key), Bg, wg in zip(self.groups, B, w):
            if a not in gathered:
                gathered[a] = xb[a].index_select(0, src).view(E, mul, d1)
            X = gathered[a]
            m = X * Bg if d1 == 1 else torch.bmm(X, Bg)  # [E, mul, Q * d3]
            m = (m.view(E, mul, Q, d3) * wg.view(E, mul, Q, 1)).view(E, -1)
            aggs.append(m.new_zeros(N, m.shape[1]).index_add_(0, dst, m))
        return torch.cat(aggs, dim=1)[:, self.mid_perm]
