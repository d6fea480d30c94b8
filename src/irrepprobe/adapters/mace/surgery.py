"""A MACE model without some orders, of MACE's own classes (surgery for ``irrepprobe prune --format mace``).

The small model is built by MACE's own constructor from ``extract_config_mace_model`` with the orders gone
from ``hidden_irreps`` and ``max_ell`` lowered (MACE's spherical harmonics hold every order up to
``max_ell``, so only the highest orders can go). Every weight that connects channels both models have is
copied, rescaled for e3nn's path normalisations (``o3.Linear`` and ``FullyConnectedTensorProduct`` divide
by their fan-in, which shrinks), and the radial MLP's last layer keeps the columns of the convolution's
kept paths. The symmetric contraction's weights live in the basis of its ``U`` tensors, which MACE builds
afresh for the smaller input irreps: the old basis restricted to the kept components is re-expressed in the
new one by least squares on the contraction's values at random inputs (exact: the restricted maps are
equivariant symmetric maps of the smaller input, which the new basis spans; the fit's residual is checked).
Before fine-tuning the small model computes what the masked model (the orders zeroed everywhere, spherical
harmonics included) computes.

Channels: MACE's constructor takes one ``hidden_irreps`` for every layer, and its symmetric contraction
gives every output irrep as many channels as its input has, so a MACE model keeps the same number of
channels in every block of every layer (:func:`channel_groups`). Each point keeps its own channels (the
node features leaving each layer, the up-projection, the first layer's message before its element skip),
except the messages, whose channel ``k`` carries every order into the product: one set for all their
blocks, and the contraction's weights keep those columns."""
from __future__ import annotations

import torch
from e3nn import o3

from ...errors import IrrepprobeError
from ...irreps.surgery import nodes, copy_linear, copy_rest, copy_tp, copy_tp_columns, irreps_without, regroup, tp_names
from .runtime import build

FIT_SAMPLES = 64  # random inputs per fitted contraction; the basis has at most a few dozen elements


def _values(U: torch.Tensor, x: torch.Tensor, scalar_out: bool) -> torch.Tensor:
    """[samples * out_dim, basis] the contraction of each basis tensor of ``U`` with x (nu times)."""
    U = U.unsqueeze(0) if scalar_out else U  # [out, in, ..., in, basis]
    nu = U.dim() - 2
    out = U.expand(len(x), *U.shape)
    for _ in range(nu):  # contract the last input index each time (the tensor is symmetric in them)
        out = torch.einsum("s...ib,si->s...b", out, x)
    return out.reshape(-1, U.shape[-1])


def _copy_contraction(new, old, kept: torch.Tensor, scalar_out: bool, channels=None, seed: int = 0) -> None:
    """One output irrep's contraction: per correlation order, the old weights in the new basis."""
    g = torch.Generator().manual_seed(seed)
    orders = [new.correlation] + [new.correlation - i - 1 for i in range(len(new.weights))]
    params_new = [new.weights_max] + list(new.weights)
    params_old = [old.weights_max] + list(old.weights)
    for nu, w_new, w_old in zip(orders, params_new, params_old):
        U_new = new.U_tensors(nu).double()
        U_old = old.U_tensors(nu).double()
        first = 0 if scalar_out else 1
        for d in range(first, first + nu):  # the old basis restricted to the kept input components
            U_old = U_old.index_select(d, kept)
        x = torch.randn(FIT_SAMPLES, len(kept), generator=g, dtype=torch.float64)
        A_new, A_old = _values(U_new, x, scalar_out), _values(U_old, x, scalar_out)
        # gelsd (SVD): a basis whose elements share their symmetric part (rank-deficient values) is fine
        M = torch.linalg.lstsq(A_new, A_old, driver="gelsd").solution  # [basis new, basis old]
        scale = A_old.norm().clamp_min(1e-300)
        if float((A_new @ M - A_old).norm() / scale) > 1e-6:
            raise IrrepprobeError("the symmetric contraction's kept paths are not spanned by the smaller model's "
                                  "basis: this MACE variant cannot be pruned exactly")
        if w_new.numel() == 0 or w_old.numel() == 0:  # a path MACE zeroes (EmptyParam)
            continue
        w = w_old.double() if channels is None else w_old.double()[..., channels]
        with torch.no_grad():
            w_new.copy_(torch.einsum("sb,ebc->esc", M, w).to(w_new.dtype))


def _copy_symmetric(new, old, drop, channels=None) -> None:
    dims_in = [(ir.l, ir.dim) for _, ir in o3.Irreps(old.irreps_in)]
    kept, start = [], 0
    for l, d in dims_in:
        if l not in drop:
            kept += range(start, start + d)
        start += d
    kept = torch.tensor(kept)
    by_irrep = {str(ir): c for (_, ir), c in zip(o3.Irreps(old.irreps_out), old.contractions)}
    for (_, ir), c in zip(o3.Irreps(new.irreps_out), new.contractions):
        _copy_contraction(c, by_irrep[str(ir)], kept, ir.l == 0, channels)


def channel_groups(module) -> list[tuple[str, tuple[str, ...], str]]:
    """One group: every point whose channels a MACE model can lose, all with the same count per block."""
    points = ["node_embedding"]
    for i, inter in enumerate(module.interactions):
        points += [f"interactions.{i}.linear_up", f"interactions.{i}.message", f"products.{i}"]
        if "Residual" not in type(inter).__name__:
            points.append(f"interactions.{i}.linear")
    return [("every layer", tuple(points), str(module.interactions[0].hidden_irreps))]


def tied_points(module) -> list[str]:
    """Points whose blocks keep one set of channels: the messages (channel k feeds the product whole)."""
    return [f"interactions.{i}.message" for i in range(len(module.interactions))]


def _linear_names(name: str, m, conv, keep: dict, residual: dict) -> tuple:
    """(input, output) channel names of the ``o3.Linear`` ``name`` of a MACE model under ``keep``."""
    parts = name.split(".")
    if name == "node_embedding.linear":
        return nodes(m.irreps_in), nodes(m.irreps_out, keep.get("node_embedding"))
    if parts[0] == "interactions":
        i = int(parts[1])
        feats = keep.get("node_embedding" if i == 0 else f"products.{i - 1}")
        if parts[2] == "linear_up":
            return nodes(m.irreps_in, feats), nodes(m.irreps_out, keep.get(f"interactions.{i}.linear_up"))
        if parts[2] == "linear":  # the convolution's message
            out = keep.get(f"interactions.{i}.message" if residual[i] else f"interactions.{i}.linear")
            return regroup(conv, m.irreps_in, keep.get(f"interactions.{i}.linear_up")), nodes(m.irreps_out, out)
    if parts[0] == "products" and parts[2] == "linear":
        i = int(parts[1])
        tied = keep.get(f"interactions.{i}.message")
        chans = None if tied is None else next(iter(tied.values()))
        into = {str(ir): chans for _, ir in o3.Irreps(m.irreps_in)} if chans is not None else None
        return nodes(m.irreps_in, into), nodes(m.irreps_out, keep.get(f"products.{i}"))
    if parts[0] == "readouts":
        last = f"products.{parts[1]}"
        if parts[2] in ("linear", "linear_1"):
            return nodes(m.irreps_in, keep.get(last)), nodes(m.irreps_out)
    return nodes(m.irreps_in), nodes(m.irreps_out)


def _skip_names(name: str, m, keep: dict, residual: dict) -> tuple:
    """Channel names of ``interactions.{i}.skip_tp``: the node features (or, in a first layer, the message
    before it) times the element one-hot, into the self-connection (or the message)."""
    i = int(name.split(".")[1])
    if residual[i]:
        a, out = keep.get("node_embedding" if i == 0 else f"products.{i - 1}"), keep.get(f"products.{i}")
    else:
        a, out = keep.get(f"interactions.{i}.linear"), keep.get(f"interactions.{i}.message")
    return nodes(m.irreps_in1, a), nodes(m.irreps_in2), nodes(m.irreps_out, out)


def _copy(new_module, old_module, drop, keep=None) -> None:
    """Every weight of ``old_module`` that the small ``new_module`` keeps, module by module (``keep``:
    point -> block -> the channels kept, :func:`channel_groups`)."""
    old, new = dict(old_module.named_modules()), dict(new_module.named_modules())
    keep = keep or {}
    residual = {i: "Residual" in type(b).__name__ for i, b in enumerate(old_module.interactions)}
    handled = set()
    for name, m in new.items():
        o = old.get(name)
        if o is None:
            continue
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        conv_new, conv_old = new.get(f"{parent}.conv_tp"), old.get(f"{parent}.conv_tp")
        try:
            if type(m).__name__ == "SymmetricContraction":
                tied = keep.get(f"interactions.{name.split('.')[1]}.message")
                _copy_symmetric(m, o, drop, None if tied is None else torch.tensor(next(iter(tied.values()))))
            elif isinstance(m, o3.Linear):
                copy_linear(m, o, _linear_names(name, m, conv_new, keep, residual),
                            _linear_names(name, o, conv_old, {}, residual))
            elif isinstance(m, o3.TensorProduct) and m.internal_weights and name.endswith("skip_tp"):
                copy_tp(m, o, _skip_names(name, m, keep, residual), _skip_names(name, o, {}, residual))
            elif isinstance(m, o3.TensorProduct) and m.internal_weights:
                copy_tp(m, o, tp_names(m), tp_names(o))
            elif name.endswith("conv_tp_weights"):
                *hidden_n, last_n = list(m.children())
                *hidden_o, last_o = list(o.children())
                with torch.no_grad():
                    for a, b in zip(hidden_n, hidden_o):
                        a.weight.copy_(b.weight)
                up = keep.get(f"{parent}.linear_up")
                copy_tp_columns(last_n.weight, last_o.weight, conv_new, conv_old, tp_names(conv_new, up),
                                tp_names(conv_old))
            else:
                continue
        except ValueError as e:
            raise IrrepprobeError(f"cannot prune {name} of this MACE model: {e}") from None
        handled.update(f"{name}.{p}" if name else p for p, _ in m.named_parameters())
    copy_rest(new_module, old_module, handled, "MACE")


def without_orders(module, drop: list[int], dtype: torch.dtype, keep: dict | None = None):
    """``module`` rebuilt by MACE's own constructor without the orders ``drop`` (and, with ``keep``, with
    as many channels per block as it names), weights copied."""
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(module)
    if "error" in config:
        raise IrrepprobeError(f"MACE cannot rebuild this {type(module).__name__} from its own config: "
                              f"{config['error']}")
    config["hidden_irreps"] = irreps_without(config["hidden_irreps"], drop)
    if keep:
        counts = {len(c) for per in keep.values() for c in per.values()}
        if len(counts) != 1:
            raise IrrepprobeError("a MACE model keeps the same number of channels in every block of every layer "
                                  f"(one hidden_irreps, a channel-wise product); asked: {sorted(counts)}")
        c = counts.pop()
        config["hidden_irreps"] = o3.Irreps([(c, ir) for _, ir in config["hidden_irreps"]])
    if drop:
        config["max_ell"] = min(int(config["max_ell"]), min(drop) - 1)
    if config.get("edge_irreps") is not None:
        config["edge_irreps"] = irreps_without(config["edge_irreps"], drop)
    new = build(type(module), config, dtype)
    _copy(new, module, set(drop), keep)
    return new

