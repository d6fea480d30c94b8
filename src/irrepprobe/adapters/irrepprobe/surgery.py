"""Our model without some of its orders: the config without them (:func:`config_without`), and the weights
of the full model carried over (:func:`warm_start`, :func:`without_orders`) by the channel names of
:mod:`irrepprobe.irreps.surgery`, so that the pruned model computes what the full model computes with the
dropped orders switched off (tests/test_prune.py checks this). This is true order removal (spherical
harmonics and every path through the order gone), which utilisation sets beside zeroing the order's
blocks, and the start of a warm-started pruned run."""
from __future__ import annotations

import torch
from e3nn import o3

from ...config import Config
from ...data.targets import get_target
from ...errors import IrrepprobeError
from ...irreps.surgery import copy_linear, copy_tp_columns, messages, nodes, pre, tp_names
from ...models.layers import Interaction, Readout


def config_without(config: Config, drop: list[int]) -> Config:
    """``config`` without the orders in ``drop``: gone from the spherical harmonics and from the hidden
    irreps. Refuses l = 0, orders the model does not have, and orders its output needs."""
    drop = sorted({int(l) for l in drop})
    ls = sorted(config.model.ls)
    if 0 in drop:
        raise IrrepprobeError("l=0 is never dropped: the scalars carry the readout and the gates")
    missing = [l for l in drop if l not in ls]
    if missing:
        raise IrrepprobeError(f"cannot drop l={missing[0]}: the model's orders are {ls}")
    target = get_target(config.data.target)
    needed = sorted({ir.l for _, ir in o3.Irreps(target.irreps)} & set(drop))
    if needed:
        raise IrrepprobeError(f"cannot drop l={needed[0]}: the target {target.name} ({target.irreps}) needs it "
                              "in the last layer")
    new = Config.from_dict(config.to_dict())
    new.model.ls = [l for l in ls if l not in drop]
    if isinstance(new.model.mul, dict):
        new.model.mul = {int(l): m for l, m in new.model.mul.items() if int(l) not in drop}
    return new.validate()


def _copy_interaction(new: Interaction, old: Interaction) -> None:
    with torch.no_grad():
        *hidden_new, last_new = list(new.radial.children())
        *hidden_old, last_old = list(old.radial.children())
        for a, b in zip(hidden_new, hidden_old):
            a.weight.copy_(b.weight)
    copy_tp_columns(last_new.weight, last_old.weight, new.tp, old.tp, tp_names(new.tp), tp_names(old.tp))
    pre_new, pre_old = pre(new.irreps_out, new.gate), pre(old.irreps_out, old.gate)
    copy_linear(new.linear, old.linear, (messages(new.tp), pre_new), (messages(old.tp), pre_old))
    if new.self_connection is not None:
        copy_linear(new.self_connection, old.self_connection, (nodes(new.irreps_in), pre_new),
                    (nodes(old.irreps_in), pre_old))


def _copy_readout(new: Readout, old: Readout) -> None:
    hidden = new.linear2.irreps_in
    copy_linear(new.linear1, old.linear1, (nodes(new.irreps_in), pre(hidden, new.gate)),
                (nodes(old.irreps_in), pre(hidden, old.gate)))
    with torch.no_grad():
        new.linear2.weight.copy_(old.linear2.weight)


def warm_start(new, old) -> None:
    """Copy ``old``'s weights into the pruned ``new`` (same config but for the dropped orders). Exact
    (``new`` then computes ``old`` with the orders switched off) when every layer keeps its residual
    wiring; dropping every l > 0 gives the first layer a residual the full model lacks, which
    :func:`without_orders` keeps out and a pruned training run keeps in."""
    with torch.no_grad():
        new.embedding.linear.weight.copy_(old.embedding.linear.weight)
        for name in ("scale", "atom_ref"):
            getattr(new, name).copy_(getattr(old, name))
    for a, b in zip(new.layers, old.layers):
        _copy_interaction(a, b)
    _copy_readout(new.readout, old.readout)


def without_orders(model, drop: list[int]):
    """A new network computing what ``model`` computes with the orders in ``drop`` switched off
    everywhere (the function a warm-started pruned model starts from), in eval mode on its device."""
    from ...models.network import build_model

    new = build_model(config_without(model.config, drop))
    for a, b in zip(new.layers, model.layers):
        # a layer whose only dropped outputs were l > 0 now maps irreps onto themselves, so the config
        # would give it a residual the full model's layer does not have (the first layer of a model left
        # with scalars alone): keep the full model's wiring, as the function to reproduce is its own
        a.residual = b.residual
    warm_start(new, model)
    p = next(model.parameters())
    return new.to(device=p.device, dtype=p.dtype).eval()
