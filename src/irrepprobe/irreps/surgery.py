"""The generic e3nn weight-copy kit every family's surgery uses: channels named by what they carry, and the
weights of a large model copied into a smaller one (the same model without some orders) by those names.

A channel is named by what it carries: a node feature ``(irrep, u)``; a message channel by its path
``(irrep_in, irrep_sh, irrep_out, u)``; a gate ``("gate", gated channel)``. Weights are matched by the names
of the channels they connect, never by position, so the layouts of the two models (concatenated, sorted,
merged blocks) never need to agree. Every weight of the small model must find one (strict): a silent miss
would leave a freshly initialised weight where the function needs the old one. Each copy is rescaled by
the ratio of e3nn's path normalisations, so that the small model computes what the large one computes
with the dropped orders switched off.

Channels are pruned the same way: ``keep`` (irrep -> the old channel indices a block keeps, in order) names
the small model's channel ``u`` of a block by the large model's channel ``keep[irrep][u]``, so that the
same strict copy yields the model that computes what the large one computes with the other channels
masked. A tensor product's ``uvu`` outputs follow their input channel."""
from __future__ import annotations

import torch
from e3nn import o3

from ..errors import IrrepprobeError


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


def nodes(irreps: o3.Irreps, keep: dict | None = None) -> list[list]:
    """Channel names of node features: ``(irrep, u)``, with ``u`` the large model's channel under ``keep``."""
    irreps, keep = o3.Irreps(irreps), keep or {}
    if keep and len({ir for _, ir in irreps}) != len(irreps):
        raise ValueError(f"channels kept by name in irreps with a repeated irrep: {irreps}")
    out = []
    for mul, ir in irreps:
        idx = list(keep.get(str(ir), range(mul)))
        if len(idx) != mul:
            raise ValueError(f"{mul}x{ir} keeps {len(idx)} channels")
        out.append([(str(ir), int(u)) for u in idx])
    return out


def pre(irreps: o3.Irreps, gate, keep: dict | None = None) -> list[list]:
    """Names of the channels entering the gate: scalars, one gate per gated channel, gated blocks
    (``keep``: of the gate's output, :func:`nodes`)."""
    if gate is None:
        return nodes(irreps, keep)
    named = nodes(irreps, keep)
    scalars = [(ir, names) for (mul, ir), names in zip(irreps, named) if ir.l == 0]
    gated = [(ir, names) for (mul, ir), names in zip(irreps, named) if ir.l > 0]
    gates = [("gate", n) for _, names in gated for n in names]
    blocks = scalars + ([(o3.Irrep("0e"), gates)] if gates else []) + gated
    return _merge(blocks)


def _paths(tp) -> list[tuple]:
    return [(str(tp.irreps_in1[i.i_in1].ir), str(tp.irreps_in2[i.i_in2].ir), str(tp.irreps_out[i.i_out].ir))
            for i in tp.instructions]


def _channels_of(tp, keep: dict | None) -> dict[int, list[int]]:
    """Per output entry of ``tp``, the large model's channel of each of its channels: the input-1 channel
    it follows (``uvu``, under ``keep``) or its own index."""
    named = nodes(tp.irreps_in1, keep) if keep else None
    out = {}
    for ins in tp.instructions:
        mul = tp.irreps_out[ins.i_out].mul
        if named is None:
            out[ins.i_out] = list(range(mul))
        elif ins.connection_mode == "uvu":
            out[ins.i_out] = [u for _, u in named[ins.i_in1]]
        else:
            raise ValueError(f"channels pruned before a tensor-product path of mode {ins.connection_mode!r}")
    return out


def messages(tp, merge: bool = True, keep: dict | None = None) -> list[list]:
    """Channel names of the message irreps, simplified (the input of our layer's linear map) or, without
    ``merge``, one list per entry of the tensor product's own output irreps (``keep``: of input 1)."""
    by_out = dict(zip((i.i_out for i in tp.instructions), _paths(tp)))
    chans = _channels_of(tp, keep)
    blocks = [(ir, [(*by_out[k], u) for u in chans[k]]) for k, (mul, ir) in enumerate(tp.irreps_out)]
    return _merge(blocks) if merge else [names for _, names in blocks]


def linear_index(lin: o3.Linear, names_in, names_out) -> dict:
    """(input name, output name) -> (position in the flat weight, path weight)."""
    index, offset = {}, 0
    for ins in lin.instructions:
        mi, mo = ins.path_shape
        for u in range(mi):
            for v in range(mo):
                index[(names_in[ins.i_in][u], names_out[ins.i_out][v])] = (offset + u * mo + v, ins.path_weight)
        offset += mi * mo
    return index


def tp_out_names(tp, keep: dict | None = None) -> list[list]:
    """Channel names of a tensor product's output entries: by the path that feeds each entry, or, where
    several paths are summed into one entry, by irrep (each irrep then appears once). ``keep``: of input 1."""
    feeds: dict[int, list] = {}
    for ins, path in zip(tp.instructions, _paths(tp)):
        feeds.setdefault(ins.i_out, []).append(path)
    if all(len(v) == 1 for v in feeds.values()):
        chans = _channels_of(tp, keep)
        return [[(*feeds[k][0], u) for u in chans[k]] for k in range(len(tp.irreps_out))]
    irs = [ir for _, ir in tp.irreps_out]
    if len(set(irs)) != len(irs):
        raise ValueError("a tensor product whose repeated output irreps are fed by several paths each")
    if keep:
        raise ValueError("channels pruned before a tensor product that sums several paths into one output")
    return nodes(tp.irreps_out)


def tp_names(tp, keep: dict | None = None) -> tuple:
    """The three name lists :func:`tp_index` takes: input 1 (``keep``: its channels kept) and input 2 as node
    channels, and the output."""
    return nodes(tp.irreps_in1, keep), nodes(tp.irreps_in2), tp_out_names(tp, keep)


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


def _matched(new_index: dict, old_index: dict, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positions in the small model's flat weight, positions in the large one's, rescaling factors): every
    weight of the small model paired with the large model's weight of the same name (strict)."""
    missing = [k for k in new_index if k not in old_index]
    if missing:
        raise ValueError(f"{what}: {len(missing)} weights of the small model have no counterpart, e.g. {missing[0]}")
    new_at, old_at, ratio = [], [], []
    for key, (j, pw) in new_index.items():
        i, pw_old = old_index[key]
        new_at.append(j)
        old_at.append(i)
        ratio.append(pw_old / pw)
    return (torch.tensor(new_at, dtype=torch.long), torch.tensor(old_at, dtype=torch.long),
            torch.tensor(ratio, dtype=torch.float64))


def _copy_at(new: torch.Tensor, old: torch.Tensor, matched: tuple, dim: int = 0) -> None:
    """``new[j] = old[i] * r`` for every matched (j, i, r), along ``dim``, in one indexed copy (computed in
    ``old``'s dtype, stored in ``new``'s)."""
    j, i, r = matched
    shape = [1] * old.dim()
    shape[dim] = -1
    with torch.no_grad():
        src = old.index_select(dim, i.to(old.device)) * r.to(device=old.device, dtype=old.dtype).reshape(shape)
        new.index_copy_(dim, j.to(new.device), src.to(device=new.device, dtype=new.dtype))


def copy_tp(new, old, names_new: tuple, names_old: tuple) -> None:
    """Internal weights of a tensor product (``names_*``: input 1, input 2 and output channel names)."""
    _copy_at(new.weight, old.weight, _matched(tp_index(new, *names_new), tp_index(old, *names_old), "tensor product"))


def copy_tp_columns(last_new: torch.Tensor, last_old: torch.Tensor, tp_new, tp_old, names_new: tuple,
                    names_old: tuple) -> None:
    """The last layer ``[hidden, weights]`` of the radial network that gives a tensor product its per-edge
    weights: the columns of the kept paths."""
    _copy_at(last_new, last_old, _matched(tp_index(tp_new, *names_new), tp_index(tp_old, *names_old), "radial network"),
             dim=1)


def copy_linear(new: o3.Linear, old: o3.Linear, names_new: tuple, names_old: tuple) -> None:
    """An ``o3.Linear`` by channel names (strict; biases of scalar outputs by output name)."""
    _copy_at(new.weight, old.weight, _matched(linear_index(new, *names_new), linear_index(old, *names_old), "linear map"))
    if getattr(new, "bias", None) is not None and new.bias.numel():
        raise ValueError("a linear map with biases")


def copy_rest(new_module, old_module, handled: set, family: str) -> None:
    """The parameters surgery did not handle, which must have kept their shape (scalar-only parts), and
    the buffers of the same shape (scales, shifts, per-element energies): copied as they are."""
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


def regroup(tp, irreps, keep: dict | None = None) -> list[list]:
    """:func:`tp_out_names` laid out as ``irreps`` (the input of the linear map after the tensor product,
    which may merge its repeated entries: ``8x0e+8x0e+8x0e`` -> ``24x0e``), the order of channels kept
    (``keep``: of the tensor product's input 1)."""
    flat = [(ir, n) for (_, ir), names in zip(tp.irreps_out, tp_out_names(tp, keep)) for n in names]
    out, k = [], 0
    for mul, ir in o3.Irreps(irreps):
        chunk = flat[k:k + mul]
        if len(chunk) != mul or any(i != ir for i, _ in chunk):
            raise ValueError(f"the linear map's input {irreps} is not the tensor product's output {tp.irreps_out}")
        out.append([n for _, n in chunk])
        k += mul
    return out
