"""A model without some of its orders: the config without them (:func:`config_without`), and the weights
of the full model carried over (:func:`warm_start`, :func:`without_orders`): every weight that connects
channels both models have is copied, rescaled by the ratio of e3nn's path normalisations, so that the pruned model computes what
the full model computes with the dropped orders switched off (tests/test_prune.py checks this). This is
true order removal (spherical harmonics and every path through the order gone), which utilisation sets
beside zeroing the order's blocks, and the start of a warm-started pruned run.

A channel is named by what it carries: a node feature ``(irrep, u)``; a message channel by its path
``(irrep_in, irrep_sh, irrep_out, u)``; a gate ``("gate", gated channel)``. Weights are matched by the names
of the channels they connect, so the layouts of the two models (concatenated, sorted, merged blocks)
never need to agree."""
from __future__ import annotations

import torch
from e3nn import o3

from ..config import Config
from ..data.targets import get_target
from ..errors import IrrepprobeError
from .layers import Interaction, Readout


def irreps_without(irreps, drop) -> o3.Irreps:
    """``irreps`` without the blocks of the orders in ``drop``."""
    return o3.Irreps([(m, ir) for m, ir in o3.Irreps(irreps) if ir.l not in drop])


def highest(drop: list[int], lmax: int) -> bool:
    """Whether ``drop`` is the top of 0..lmax (l=lmax, or l=lmax-1,lmax and so on)."""
    return sorted(drop) == list(range(lmax - len(drop) + 1, lmax + 1))


def why_not_top(drop: list[int], lmax: int, family: str, holds: str,
                scalars: str = "the scalars carry the energy and the gates") -> str | None:
    """Why a third-party model with every order 0..lmax in its spherical harmonics cannot lose ``drop``
    (``holds`` says where the orders live), or None: the checks every family's surgery shares."""
    if not drop:
        return "no order to drop"
    if 0 in drop:
        return f"l=0 is never dropped: {scalars}"
    missing = [l for l in drop if not 0 < l <= lmax]
    if missing:
        return f"this {family} model has orders l=0..{lmax}: there is no l={missing[0]} to drop"
    if not highest(drop, lmax):
        return (f"{holds}, so only the highest orders can be dropped (here l={lmax}, or l={lmax - 1},{lmax} and "
                f"so on), not l={','.join(map(str, drop))}")
    return None


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


def _merge(blocks: list[tuple[o3.Irrep, list]]) -> list[list]:
    """Channel names per block after e3nn's stable sort by irrep and merge of equal neighbours."""
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i][0], i))
    out, last = [], None
    for i in order:
        ir, names = blocks[i]
        if ir == last:
            out[-1] = out[-1] + names
        else:
            out.append(list(names))
        last = ir
    return out


def _nodes(irreps: o3.Irreps) -> list[list]:
    return [[(str(ir), u) for u in range(mul)] for mul, ir in irreps]


def _pre(irreps: o3.Irreps, gate) -> list[list]:
    """Names of the channels entering the gate: scalars, one gate per gated channel, gated blocks."""
    if gate is None:
        return _nodes(irreps)
    scalars = [(ir, names) for (mul, ir), names in zip(irreps, _nodes(irreps)) if ir.l == 0]
    gated = [(ir, names) for (mul, ir), names in zip(irreps, _nodes(irreps)) if ir.l > 0]
    gates = [("gate", n) for _, names in gated for n in names]
    blocks = scalars + ([(o3.Irrep("0e"), gates)] if gates else []) + gated
    return _merge(blocks)


def _paths(tp) -> list[tuple]:
    return [(str(tp.irreps_in1[i.i_in1].ir), str(tp.irreps_in2[i.i_in2].ir), str(tp.irreps_out[i.i_out].ir))
            for i in tp.instructions]


def _messages(tp, merge: bool = True) -> list[list]:
    """Channel names of the message irreps, simplified (the input of our layer's linear map) or, without
    ``merge``, one list per entry of the tensor product's own output irreps."""
    paths = dict(zip((i.i_out for i in tp.instructions), _paths(tp)))
    blocks = [(ir, [(*paths[k], u) for u in range(mul)]) for k, (mul, ir) in enumerate(tp.irreps_out)]
    return _merge(blocks) if merge else [names for _, names in blocks]


def _linear_index(lin: o3.Linear, names_in, names_out) -> dict:
    """(input name, output name) -> (position in the flat weight, path weight)."""
    index, offset = {}, 0
    for ins in lin.instructions:
        mi, mo = ins.path_shape
        for u in range(mi):
            for v in range(mo):
                index[(names_in[ins.i_in][u], names_out[ins.i_out][v])] = (offset + u * mo + v, ins.path_weight)
        offset += mi * mo
    return index


def _copy_interaction(new: Interaction, old: Interaction) -> None:
    with torch.no_grad():
        *hidden_new, last_new = list(new.radial.children())
        *hidden_old, last_old = list(old.radial.children())
        for a, b in zip(hidden_new, hidden_old):
            a.weight.copy_(b.weight)
    copy_tp_columns(last_new.weight, last_old.weight, new.tp, old.tp, tp_names(new.tp), tp_names(old.tp))
    pre_new, pre_old = _pre(new.irreps_out, new.gate), _pre(old.irreps_out, old.gate)
    copy_linear(new.linear, old.linear, (_messages(new.tp), pre_new), (_messages(old.tp), pre_old))
    if new.self_connection is not None:
        copy_linear(new.self_connection, old.self_connection, (_nodes(new.irreps_in), pre_new),
                    (_nodes(old.irreps_in), pre_old))


def _copy_readout(new: Readout, old: Readout) -> None:
    hidden = new.linear2.irreps_in
    copy_linear(new.linear1, old.linear1, (_nodes(new.irreps_in), _pre(hidden, new.gate)),
                (_nodes(old.irreps_in), _pre(hidden, old.gate)))
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
    from .network import build_model

    new = build_model(config_without(model.config, drop))
    for a, b in zip(new.layers, model.layers):
        # a layer whose only dropped outputs were l > 0 now maps irreps onto themselves, so the config
        # would give it a residual the full model's layer does not have (the first layer of a model left
        # with scalars alone): keep the full model's wiring, as the function to reproduce is its own
        a.residual = b.residual
    warm_start(new, model)
    p = next(model.parameters())
    return new.to(device=p.device, dtype=p.dtype).eval()


# ---------------------------------------------------------------- surgery of other families' e3nn modules
# Weights are matched by channel names, never by position: a name says which input channels (and output
# channel) a weight connects, so that a weight the small model keeps finds its value in the large one
# whatever the two layouts. Every weight of the small model must find one (strict): a silent miss would
# leave a freshly initialised weight where the function needs the old one.


def tp_out_names(tp) -> list[list]:
    """Channel names of a tensor product's output entries: by the path that feeds each entry, or, where
    several paths are summed into one entry, by irrep (each irrep then appears once)."""
    feeds: dict[int, list] = {}
    for ins, path in zip(tp.instructions, _paths(tp)):
        feeds.setdefault(ins.i_out, []).append(path)
    if all(len(v) == 1 for v in feeds.values()):
        return [[(*feeds[k][0], u) for u in range(mul)] for k, (mul, _) in enumerate(tp.irreps_out)]
    irs = [ir for _, ir in tp.irreps_out]
    if len(set(irs)) != len(irs):
        raise ValueError("a tensor product whose repeated output irreps are fed by several paths each")
    return _nodes(tp.irreps_out)


def tp_names(tp) -> tuple:
    """The three name lists :func:`tp_index` takes: input 1 and input 2 as node channels, and the output."""
    return _nodes(tp.irreps_in1), _nodes(tp.irreps_in2), tp_out_names(tp)


def tp_index(tp, names1, names2, names_out) -> dict:
    """(connected channel names) -> (position in the flat weight, path weight), for ``uvw``, ``uvu`` and
    ``uuu`` paths (the ones e3nn-based interatomic potentials use)."""
    index, offset = {}, 0
    for ins in tp.instructions:
        if not ins.has_weight:
            continue
        n1, n2, no = names1[ins.i_in1], names2[ins.i_in2], names_out[ins.i_out]
        out_ir = str(tp.irreps_out[ins.i_out].ir)
        shape = tuple(ins.path_shape)
        if ins.connection_mode == "uvw":
            keys = [(n1[u], n2[v], no[w]) for u in range(shape[0]) for v in range(shape[1]) for w in range(shape[2])]
        elif ins.connection_mode == "uvu":
            keys = [(n1[u], n2[v], out_ir) for u in range(shape[0]) for v in range(shape[1])]
        elif ins.connection_mode == "uuu":
            keys = [(n1[u], n2[u], out_ir) for u in range(shape[0])]
        else:
            raise ValueError(f"tensor-product paths of mode {ins.connection_mode!r}")
        for k, key in enumerate(keys):
            index[key] = (offset + k, ins.path_weight)
        offset += len(keys)
    return index


def _matched(new_index: dict, old_index: dict, what: str):
    missing = [k for k in new_index if k not in old_index]
    if missing:
        raise ValueError(f"{what}: {len(missing)} weights of the small model have no counterpart, e.g. {missing[0]}")
    for key, (j, pw) in new_index.items():
        i, pw_old = old_index[key]
        yield j, i, pw_old / pw


def copy_tp(new, old, names_new: tuple, names_old: tuple) -> None:
    """Internal weights of a tensor product (``names_*``: input 1, input 2 and output channel names)."""
    with torch.no_grad():
        for j, i, r in _matched(tp_index(new, *names_new), tp_index(old, *names_old), "tensor product"):
            new.weight[j] = old.weight[i] * r


def copy_tp_columns(last_new: torch.Tensor, last_old: torch.Tensor, tp_new, tp_old, names_new: tuple,
                    names_old: tuple) -> None:
    """The last layer ``[hidden, weights]`` of the radial network that gives a tensor product its per-edge
    weights: the columns of the kept paths."""
    with torch.no_grad():
        for j, i, r in _matched(tp_index(tp_new, *names_new), tp_index(tp_old, *names_old), "radial network"):
            last_new[:, j] = last_old[:, i] * r


def copy_linear(new: o3.Linear, old: o3.Linear, names_new: tuple, names_old: tuple) -> None:
    """An ``o3.Linear`` by channel names (strict; biases of scalar outputs by output name)."""
    with torch.no_grad():
        for j, i, r in _matched(_linear_index(new, *names_new), _linear_index(old, *names_old), "linear map"):
            new.weight[j] = old.weight[i] * r
        if getattr(new, "bias", None) is not None and new.bias.numel():
            raise ValueError("a linear map with biases")


def copy_rest(new_module, old_module, handled: set, family: str) -> None:
    """The parameters surgery did not handle, which must have kept their shape (scalar-only parts), and
    the buffers of the same shape (scales, shifts, per-element energies): copied as they are."""
    from ..errors import IrrepprobeError

    old_state = old_module.state_dict()
    with torch.no_grad():
        for name, p in new_module.named_parameters():
            if name in handled or p.numel() == 0:
                continue
            if name not in old_state or old_state[name].shape != p.shape:
                raise IrrepprobeError(f"irrepprobe does not know how to prune {name} of this {family} model")
            p.copy_(old_state[name])
        for name, b in new_module.named_buffers():  # built from the new irreps (U tensors, masks): keep those
            if name in old_state and old_state[name].shape == b.shape and not name.endswith(("output_mask",)) \
                    and "U_matrix" not in name:
                b.copy_(old_state[name])


def regroup(tp, irreps) -> list[list]:
    """:func:`tp_out_names` laid out as ``irreps`` (the input of the linear map after the tensor product,
    which may merge its repeated entries: ``8x0e+8x0e+8x0e`` -> ``24x0e``), the order of channels kept."""
    flat = [(ir, n) for (_, ir), names in zip(tp.irreps_out, tp_out_names(tp)) for n in names]
    out, k = [], 0
    for mul, ir in o3.Irreps(irreps):
        chunk = flat[k:k + mul]
        if len(chunk) != mul or any(i != ir for i, _ in chunk):
            raise ValueError(f"the linear map's input {irreps} is not the tensor product's output {tp.irreps_out}")
        out.append([n for _, n in chunk])
        k += mul
    return out
