"""The uvu convolution of :class:`~irrepprobe.models.layers.Interaction`, computed exactly but faster
than e3nn's generic tensor product ("B-first").

For a path p = (l1, l2, l3) of the uvu product of node features x with the edge's spherical harmonics Y:

    msg_p[e, u, k] = alpha_p w[e, p, u] sum_ij C_p[i, j, k] x[src_e, u, i] Y_l2[e, j]
                   = w[e, p, u] sum_i x[src_e, u, i] B_p[e, i, k],   B_p[e] = alpha_p sum_j C_p[:, j, :] Y_l2[e, j]

B depends on the geometry only: it is shared by every channel and, within one forward pass, by every
layer. Paths from one input block to one output irrep differ only in l2, so they are stacked into one
group and computed by one batched matmul (the PyTorch path) or by a fused C++ kernel that accumulates
each destination atom's sum directly, channels as vector lanes, never building the [edges, messages]
tensor (:mod:`irrepprobe.models.kernel`).

The aggregated messages come out channels innermost, one tensor per irrep of the messages ("lanes":
[atoms, 2l+1, channels]), so the layer's per-order Linear is one matmul per order (:meth:`UVUPlan.linear`,
reading the Linear's own weights); :meth:`UVUPlan.e3nn_layout` gives e3nn's layout where a hook or a
test needs it. The layer's parameters and its checkpoints are unchanged."""
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
        # lanes: one [2l+1, channels] block per irrep of the messages (io is sorted, so equal irreps are
        # neighbours, as in io.simplify(), the Linear's input); where each output block's channels start
        self.lanes, chan, lane_of = [], {}, {}
        base = 0
        for i_out, (mul, ir) in enumerate(io):
            if not self.lanes or self.lanes[-1][0] != ir:
                self.lanes.append([ir, base, 0])
            chan[i_out] = self.lanes[-1][2]
            lane_of[i_out] = len(self.lanes) - 1
            self.lanes[-1][2] += mul
            base += mul * ir.dim
        self.lanes = [tuple(v) for v in self.lanes]  # (irrep, first column, channels)
        self.in1_splits = [mul * ir.dim for mul, ir in i1]
        self.in1_shapes = [(mul, ir.dim) for mul, ir in i1]
        sh_slices = i2.slices()
        self.groups = []  # (input block, mul, d1, d3, paths, sh columns lo:hi, cache key, lane, lane channels)
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
            # for the kernel: where path q's weights start (e3nn's layout, channel u at +u), where its
            # output starts in its lane (component k at +k * ostride, channel u at +u)
            lane = lane_of[tp.instructions[ks[0]].i_out]
            _, lane_base, ostride = self.lanes[lane]
            ocol = [chan[tp.instructions[k].i_out] for k in ks]
            self.register_buffer(f"wcol{n}", torch.tensor([w_off[k] for k in ks]), persistent=False)
            self.register_buffer(f"ocol{n}", torch.tensor(ocol), persistent=False)
            # B of one group depends on (l1, l3, the sh columns, the path weights): layers share it
            key = (ir1.l, ir3.l, lo, hi, tuple(round(tp.instructions[k].path_weight, 12) for k in ks),
                   tuple(i2[tp.instructions[k].i_in2].ir.l for k in ks))
            self.groups.append((a, mul, d1, d3, Q, lo, hi, key, lane, ostride))
            w_uq += [w_off[k] + u for u in range(mul) for k in ks]  # per-edge weights in [u][q] order
            # the PyTorch path's message layout per group is [u, q, k]; the lanes column of each
            mid_of_ours += [lane_base + ocol[q] + m * ostride + u for u in range(mul) for q in range(Q)
                            for m in range(d3)]
        if sorted(mid_of_ours) != list(range(io.dim)):
            raise ValueError("the tensor product's outputs are not covered exactly once by its paths")
        inv = torch.empty(io.dim, dtype=torch.long)
        inv[torch.tensor(mid_of_ours)] = torch.arange(io.dim)
        self.register_buffer("mid_perm", inv, persistent=False)
        self.register_buffer("w_uq", torch.tensor(w_uq), persistent=False)
        self.w_splits = [mul * Q for (a, mul, d1, d3, Q, *_rest) in self.groups]
        self._linear_plan = None  # the Linear's instructions per lane, on first use

    def e3nn_layout(self, lanes: list[torch.Tensor]) -> torch.Tensor:
        """Messages as lanes -> [atoms, tp.irreps_out.dim] in e3nn's layout."""
        return torch.cat([z.transpose(1, 2).reshape(z.shape[0], -1) for z in lanes], dim=1)

    def linear(self, lanes: list[torch.Tensor], lin: o3.Linear, scale: float = 1.0) -> torch.Tensor:
        """``lin(scale * e3nn_layout(lanes))`` with ``lin``'s own weights: one matmul per order."""
        if self._linear_plan is None:
            self._linear_plan = _linear_plan(self.lanes, lin)
        N, w, pieces = lanes[0].shape[0], lin.weight, {}
        for (ir, base, K), ins, z in zip(self.lanes, self._linear_plan, lanes):
            if not ins:
                continue
            W = torch.cat([w[lo:hi].view(K, V) * (pw * scale) for _, lo, hi, V, pw in ins], dim=1)
            y = (z.reshape(N * ir.dim, K) @ W).view(N, ir.dim, -1)
            for (i_out, _, _, V, _), piece in zip(ins, torch.split(y, [i[3] for i in ins], dim=2)):
                piece = piece.transpose(1, 2).reshape(N, V * ir.dim)
                pieces[i_out] = piece if i_out not in pieces else pieces[i_out] + piece
        return torch.cat([pieces[i] if i in pieces else w.new_zeros(N, mul * ir.dim)
                          for i, (mul, ir) in enumerate(lin.irreps_out)], dim=1)

    def basis(self, sh: torch.Tensor, cache: dict) -> list[torch.Tensor]:
        """Per group, B [edges, d1, paths * d3]; from ``cache`` when another layer built it already."""
        out = []
        for n, (a, mul, d1, d3, Q, lo, hi, key, *_rest) in enumerate(self.groups):
            if key not in cache:
                C = getattr(self, f"C{n}").to(sh.dtype)
                cache[key] = (sh[:, lo:hi] @ C).view(sh.shape[0], d1, Q * d3)
            out.append(cache[key])
        return out

    def forward(self, x, sh, weight, edge_index, cache: dict | None = None, fused: bool = False):
        """Aggregated messages as lanes, one [atoms, 2l+1, channels] per irrep of ``tp.irreps_out``: sum over
        each atom's incoming edges of ``tp(x[src], sh, weight)``. ``fused``: the compiled kernel where it can
        run."""
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
        for (a, mul, d1, d3, Q, *_rest), Bg, wg in zip(self.groups, B, w):
            if a not in gathered:
                gathered[a] = xb[a].index_select(0, src).view(E, mul, d1)
            X = gathered[a]
            m = X * Bg if d1 == 1 else torch.bmm(X, Bg)  # [E, mul, Q * d3]
            m = (m.view(E, mul, Q, d3) * wg.view(E, mul, Q, 1)).view(E, -1)
            aggs.append(m.new_zeros(N, m.shape[1]).index_add_(0, dst, m))
        z = torch.cat(aggs, dim=1)[:, self.mid_perm]
        return [z[:, base:base + K * ir.dim].reshape(N, ir.dim, K) for ir, base, K in self.lanes]


def _linear_plan(lanes, lin: o3.Linear) -> list[list]:
    """Per lane, the Linear's instructions reading it: (output block, weight lo:hi, outputs, path weight)."""
    if [(K, ir) for ir, _, K in lanes] != [(mul, ir) for mul, ir in lin.irreps_in]:
        raise ValueError(f"the Linear's input {lin.irreps_in} is not the messages' lanes")
    if getattr(lin, "bias", None) is not None and lin.bias.numel():
        raise ValueError("UVUPlan.linear takes a Linear without biases")
    plan, off = [[] for _ in lanes], 0
    for ins in lin.instructions:
        mi, mo = ins.path_shape
        plan[ins.i_in].append((ins.i_out, off, off + mi * mo, mo, ins.path_weight))
        off += mi * mo
    return plan
