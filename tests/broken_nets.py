"""e3nn networks made not equivariant on purpose, for the equivariance check's tests (factories for the
e3nn adapter: ``broken_nets:position_leak``, loaded from tests/, which pytest puts on the path).

Both are :func:`irrepprobe.examples.e3nn_nets.simple_network` with a forward hook on the gate that ends its
second layer (``mp.layers.1.second``, whose output is the layer's, ``mp.layers.1``), so that everything
before it is untouched:

* :func:`position_leak`: adds ``0.5 * x`` (the absolute x coordinate of each atom) to the layer's first
  scalar channel: its ``0e`` block, and all that follows, changes under rotation;
* :func:`fixed_rotation`: turns every ``1o`` channel of the layer by one fixed rotation, whatever the
  input's orientation: the norms stay (invariants unchanged at that layer), only the comparison
  against ``D(R)`` sees it, and the layers after it see a wrong direction.
"""
from __future__ import annotations

import torch
from e3nn import o3

from irrepprobe.irreps import blocks
from irrepprobe.examples.e3nn_nets import simple_network


def _with_positions(net):
    def keep_pos(module, args):
        module._pos = args[0]["pos"]
    net.register_forward_pre_hook(keep_pos)
    return net


def position_leak(seed: int = 0) -> torch.nn.Module:
    net = _with_positions(simple_network(seed=seed))
    layer = net.mp.layers[1].second
    first = next(b for b in blocks(layer.irreps_out) if b.name == "0e").index[0]

    def leak(module, args, out):
        out = out.clone()
        out[:, first] = out[:, first] + 0.5 * net._pos[:, 0].to(out.dtype)
        return out
    layer.register_forward_hook(leak)
    return net


def fixed_rotation(seed: int = 0) -> torch.nn.Module:
    net = simple_network(seed=seed)
    layer = net.mp.layers[1].second
    block = next(b for b in blocks(layer.irreps_out) if b.name == "1o")
    Q = o3.Irrep("1o").D_from_angles(torch.tensor(0.4), torch.tensor(1.1), torch.tensor(-0.7))

    def turn(module, args, out):
        out = out.clone()
        idx = block.index.to(out.device)
        v = out[:, idx].reshape(-1, block.mul, 3)
        out[:, idx] = (v @ Q.to(out.dtype).T).reshape(-1, block.mul * 3)
        return out
    layer.register_forward_hook(turn)
    return net
