"""A NequIP model without some orders, of nequip's own classes (surgery for ``irrepprobe prune --format
nequip``); its training checkpoint is written by :func:`irrepprobe.adapters.nequip.io.write_checkpoint`.

The small model is built by nequip's builder from the checkpoint's own model config with ``l_max``
lowered (its spherical harmonics and every hidden irreps hold all orders up to ``l_max``, so only the
highest orders can go). Every weight connecting channels both models have is copied by channel name,
rescaled for e3nn's path normalisations: the linear maps around each convolution, the self-connection
tensor product, the radial network's last layer (the columns of the convolution's kept paths); the gate
inputs are named scalar / gate-of-channel / gated channel, so a dropped order's gates go with it. Before
fine-tuning it computes what the masked model computes. Allegro is not handled: its tensor tracks couple
every order in each layer's tensor product with weights shared across paths (say so, don't guess)."""
from __future__ import annotations

import copy

import torch

from ...errors import IrrepprobeError
from ...irreps.surgery import nodes, pre, copy_linear, copy_rest, copy_tp, copy_tp_columns, regroup, tp_names
from .runtime import build


def _copy_layer(new, old) -> set:
    """One ``ConvNetLayer``: its InteractionBlock's linear maps, convolution weights and self-connection."""
    cn, co = new.conv, old.conv
    gate_n, gate_o = new.equivariant_nonlin, old.equivariant_nonlin
    pre_n, pre_o = pre(gate_n.irreps_out, gate_n), pre(gate_o.irreps_out, gate_o)
    tp_n, tp_o = cn.tp_scatter.tp, co.tp_scatter.tp
    tp_names_n, tp_names_o = tp_names(tp_n), tp_names(tp_o)
    copy_linear(cn.linear_1, co.linear_1, (nodes(cn.linear_1.irreps_in), nodes(cn.linear_1.irreps_out)),
                (nodes(co.linear_1.irreps_in), nodes(co.linear_1.irreps_out)))
    copy_linear(cn.linear_2, co.linear_2, (regroup(tp_n, cn.linear_2.irreps_in), pre_n),
                (regroup(tp_o, co.linear_2.irreps_in), pre_o))
    *hidden_n, last_n = [m for m in cn.edge_mlp.mlp if hasattr(m, "weight")]
    *hidden_o, last_o = [m for m in co.edge_mlp.mlp if hasattr(m, "weight")]
    with torch.no_grad():
        for a, b in zip(hidden_n, hidden_o):
            a.weight.copy_(b.weight)
    copy_tp_columns(last_n.weight, last_o.weight, tp_n, tp_o, tp_names_n, tp_names_o)
    if getattr(cn, "sc", None) is not None:
        copy_tp(cn.sc, co.sc, (nodes(cn.sc.irreps_in1), nodes(cn.sc.irreps_in2), pre_n),
                (nodes(co.sc.irreps_in1), nodes(co.sc.irreps_in2), pre_o))
    return {f"conv.{n}" for n, _ in cn.named_parameters()}


def without_orders(module, config: dict, drop: list[int]):
    """``module`` rebuilt by nequip's builder from ``config`` (the checkpoint's model config) with ``l_max``
    below the orders ``drop``, weights copied. Returns the module and its config."""
    cfg = copy.deepcopy(config)
    cfg["l_max"] = min(drop) - 1
    new = build(cfg, f"build the model without l={','.join(map(str, drop))}")
    p = next(module.parameters())
    new = new.to(device=p.device, dtype=p.dtype)
    olds, news = dict(module.named_modules()), dict(new.named_modules())
    handled = set()
    for name, m in news.items():
        if type(m).__name__ == "ConvNetLayer":
            try:
                handled |= {f"{name}.{n}" for n in _copy_layer(m, olds[name])}
            except ValueError as e:
                raise IrrepprobeError(f"cannot prune {name} of this NequIP model: {e}") from None
    copy_rest(new, module, handled, "NequIP")
    return new, cfg
