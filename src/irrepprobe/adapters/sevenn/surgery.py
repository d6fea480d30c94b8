"""A SevenNet model without some orders, of sevenn's own classes (surgery for ``irrepprobe prune --format
sevenn``).

The small model is built by sevenn's builder from the checkpoint's config with ``lmax`` lowered and the
orders gone from every layer's irreps (sevenn's spherical harmonics hold every order up to ``lmax``, so
only the highest orders can go). Every weight that connects channels both models have is copied, rescaled
by e3nn's path normalisations; the rest (scalars only, shifts, scales, denominators) is copied as it was.

Channels are pruned in the hidden layers (:func:`channel_groups`): the features entering layer ``t`` (the
gate of layer ``t-1``) and that layer's first self-interaction keep the same number of channels per block
(sevenn builds ``SI1`` as ``irreps_x -> irreps_x``), each its own channels; the input embedding and the
last layer's scalars keep theirs."""
from __future__ import annotations

import copy

import torch
from e3nn import o3

from ...errors import IrrepprobeError
from ...irreps.surgery import copy_linear, copy_tp_columns, irreps_without, messages, nodes, pre, tp_names, why_not_top
from .runtime import build


def why_not_without(model, drop: list[int]) -> str | None:
    """Why the loaded SevenNet ``model`` has no smaller model without the orders ``drop``; None if it has."""
    return why_not_top(drop, model.info["lmax"], "SevenNet", "sevenn's spherical harmonics hold every order up to lmax")


def channel_groups(model) -> list[tuple[str, tuple[str, ...], str]]:
    """``(name, points, irreps)`` of each hidden layer whose channels can be pruned: the points whose blocks
    keep the same number of channels (their own ones), and their irreps."""
    layers = model.info["irreps_layers"]
    return [(f"layer {t}", (f"{t - 1}_equivariant_gate", f"{t}_self_interaction_1"), layers[t - 1])
            for t in range(1, model.info["layers"])]


def _narrowed(irreps, keep: dict | None):
    """``irreps`` with each block cut to the channels ``keep`` names (None: as it is)."""
    if not keep:
        return irreps
    return o3.Irreps([(len(keep.get(str(ir), range(mul))), ir) for mul, ir in o3.Irreps(irreps)])


def without_orders(model, drop: list[int], keep: dict | None = None):
    """The loaded SevenNet ``model``'s module rebuilt by sevenn's builder from its config without the
    orders ``drop`` (sorted, allowed by :func:`why_not_without`) and, with ``keep`` (point -> irrep ->
    the channels kept, for the points of :func:`channel_groups`), without the other channels there; weights
    copied, on the old module's device and dtype. Returns the module and its config."""
    old, keep = model.module, keep or {}
    config = copy.deepcopy(model.info["config"])
    n = model.info["layers"]
    layers = [old._modules["onehot_to_feature_x"].irreps_out] + [
        old._modules[f"{t}_equivariant_gate"].gate.irreps_out for t in range(n)]
    # the channels kept in the features entering layer t and in its SI1's output (None: all)
    keep_x = [None] + [keep.get(f"{t - 1}_equivariant_gate") for t in range(1, n + 1)]
    keep_x1 = [keep.get(f"{t}_self_interaction_1") for t in range(n)] + [None]
    for t in range(n + 1):
        a, b = _narrowed(layers[t], keep_x[t]), _narrowed(layers[t], keep_x1[t])
        if a != b:
            raise IrrepprobeError(f"layer {t} of a SevenNet model keeps as many channels in its self-interaction as "
                                  f"in its input ({a} against {b})")
    config["irreps_manual"] = [str(irreps_without(_narrowed(ir, keep_x[t]), drop)) for t, ir in enumerate(layers)]
    config["lmax"] = model.info["lmax"] - len(drop)
    if int(config.get("lmax_node", -1)) > 0:
        config["lmax_node"] = config["lmax"]
    new = build(config)
    olds, news = old._modules, new._modules
    try:
        done = _copy_layers(olds, news, layers, drop, n, keep_x, keep_x1)
    except ValueError as e:
        raise IrrepprobeError(f"cannot prune this SevenNet model: {e}") from None
    with torch.no_grad():
        state, old_state = new.state_dict(), old.state_dict()
        for name, v in state.items():  # the rest (scalars only, shifts, scales, denominators) as it was
            if name not in done and name in old_state and old_state[name].shape == v.shape:
                v.copy_(old_state[name])
    p = next(old.parameters())
    return new.to(device=p.device, dtype=p.dtype), config


def _with_modality(module, names: tuple) -> tuple:
    """``(input names, output names)`` of one of sevenn's ``IrrepsLinear``, with the fidelity one-hot that a
    multi-fidelity model appends to its input (``irreps_in`` = the features + ``{n}x0e``, in this order,
    never merged into the features' scalars) named as its own block: ``("modality", k)``."""
    names_in, names_out = names
    n = int(getattr(module, "num_modalities", 0) or 0)
    if n > 1:
        names_in = [*names_in, [("modality", k) for k in range(n)]]
    if len(names_in) != len(module.linear.irreps_in):
        raise ValueError(f"the input of {type(module).__name__} is {module.linear.irreps_in}, not the "
                         f"{len(names_in)} blocks irrepprobe expects")
    return names_in, names_out


def _copy_layers(olds, news, layers, drop, n_layers, keep_x, keep_x1) -> set:
    """Each interaction layer's weights by channel name (strict); the names of the parameters done."""
    done = set()
    with torch.no_grad():
        for t in range(n_layers):
            xo, xn = nodes(layers[t]), nodes(irreps_without(_narrowed(layers[t], keep_x[t]), drop), keep_x[t])
            gate_o, gate_n = olds[f"{t}_equivariant_gate"].gate, news[f"{t}_equivariant_gate"].gate
            pre_o, pre_n = pre(gate_o.irreps_out, gate_o), pre(gate_n.irreps_out, gate_n, keep_x[t + 1])
            conv_o, conv_n = olds[f"{t}_convolution"], news[f"{t}_convolution"]
            xo1 = nodes(olds[f"{t}_self_interaction_1"].linear.irreps_out)
            xn1 = nodes(news[f"{t}_self_interaction_1"].linear.irreps_out, keep_x1[t])
            pairs = {f"{t}_self_connection_intro": ((xn, pre_n), (xo, pre_o)),
                     f"{t}_self_interaction_1": ((xn, xn1), (xo, xo1)),
                     f"{t}_self_interaction_2": ((messages(conv_n.convolution, keep=keep_x1[t]), pre_n),
                                                 (messages(conv_o.convolution), pre_o))}
            for name, (names_new, names_old) in pairs.items():
                copy_linear(news[name].linear, olds[name].linear, _with_modality(news[name], names_new),
                            _with_modality(olds[name], names_old))
                done.add(f"{name}.linear.weight")
            *hidden_n, last_n = list(conv_n.weight_nn.children())
            *hidden_o, last_o = list(conv_o.weight_nn.children())
            for a, b in zip(hidden_n, hidden_o):
                a.weight.copy_(b.weight)
            tp_n, tp_o = conv_n.convolution, conv_o.convolution
            copy_tp_columns(last_n.weight, last_o.weight, tp_n, tp_o, tp_names(tp_n, keep_x1[t]), tp_names(tp_o))
            done.update(f"{t}_convolution.weight_nn.{n}" for n, _ in conv_n.weight_nn.named_parameters())
    return done
