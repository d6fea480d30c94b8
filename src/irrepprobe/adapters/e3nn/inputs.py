"""What an e3nn model is fed: the element one-hot it takes (as ``x`` and/or ``z``, :func:`_onehot_inputs`)
in the column order of its ``elements`` (:func:`_elements`), the cdist radius graph e3nn's example networks
build themselves (:func:`_graph_function`, with the batch cap that keeps their self-edges away), the input
dict (:func:`model_inputs`) and the two tiny molecules the adapter probes a model with at load
(:func:`_probe_structures`). See :mod:`irrepprobe.adapters.e3nn.adapter` for the conventions."""
from __future__ import annotations

import sys

import torch
from e3nn import o3

from ...errors import IrrepprobeError

# Modules whose networks build their graph with their own cdist ``radius_graph(pos, max_radius, batch)``.
CDIST_GRAPH = ("e3nn.nn.models.v2106.gate_points_networks", "e3nn.nn.models.gate_points_2101",
               "e3nn.nn.models.gate_points_2102")
# ... of which these give a self-edge a message (the others' radial basis is 0 at length 0)
SELF_EDGE_MESSAGES = ("e3nn.nn.models.gate_points_2101", "e3nn.nn.models.gate_points_2102")
CDIST_SAFE_ATOMS = 25  # torch.cdist computes exactly (self-distance 0) up to 25 rows


def _scalars(irreps) -> bool:
    return all(ir.l == 0 and ir.p == 1 for _, ir in o3.Irreps(irreps))


def _elements(module) -> list[int] | None:
    value = getattr(module, "elements", None)
    if value is None:
        return None
    from ase.data import atomic_numbers

    try:
        out = [int(atomic_numbers[z]) if isinstance(z, str) else int(z) for z in value]
    except (KeyError, TypeError, ValueError):
        raise IrrepprobeError(f"the model's elements attribute must list atomic numbers or symbols, got {value!r}") \
            from None
    if len(set(out)) != len(out):
        raise IrrepprobeError(f"the model's elements attribute lists an element twice: {out}")
    return out


def _onehot_inputs(module) -> dict[str, int]:
    """Input key -> width of the element one-hot it takes ("x" node input, "z" node attribute)."""
    keys = {}
    for attr in ("irreps_in", "irreps_node_input"):
        if hasattr(module, attr):
            value = getattr(module, attr)
            if value is not None:
                irreps = o3.Irreps(value)
                if not _scalars(irreps):
                    raise IrrepprobeError(f"the model's node input x is {irreps}, not scalars: the e3nn adapter "
                                          "feeds a one-hot of the element, so x must be Nx0e")
                keys["x"] = irreps.dim
            break
    wants_z = getattr(module, "input_has_node_attr", None)
    attr = getattr(module, "irreps_node_attr", None)
    if attr is not None and (wants_z or (wants_z is None and o3.Irreps(attr) != o3.Irreps("0e"))):
        irreps = o3.Irreps(attr)
        if not _scalars(irreps):
            raise IrrepprobeError(f"the model's node attribute z is {irreps}, not scalars: the e3nn adapter feeds a "
                                  "one-hot of the element, so z must be Nx0e")
        keys["z"] = irreps.dim
    return keys


def _graph_function(module):
    """The model's own cdist ``radius_graph`` when it is one of e3nn's example networks, else None."""
    name = type(module).__module__
    if name in CDIST_GRAPH and isinstance(getattr(module, "max_radius", None), (int, float)):
        return getattr(sys.modules[name], "radius_graph", None)
    return None


def _probe_structures(width: int, max_radius: float | None):
    """Two tiny molecules (a triangle and a tetrahedron, 100 A apart): 7 atoms, 18 edges within the cutoff."""
    d = 1.0 if not max_radius else min(1.0, 0.6 * float(max_radius))
    tri = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 3**0.5 / 2, 0.0]])
    tet = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]) / 8**0.5
    R = o3.matrix_z(torch.tensor(0.3)) @ o3.matrix_y(torch.tensor(0.7)) @ o3.matrix_x(torch.tensor(1.1))
    pos = torch.cat([tri, tet + torch.tensor([100.0, 0.0, 0.0])]).mul(d) @ R.T
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    columns = torch.arange(7) % max(width, 1)
    return pos, batch, columns


def model_inputs(module, info, pos, batch, columns) -> dict:
    """The input dict: positions and batch on the module's device and float dtype, plus the one-hot of each
    of ``info["onehot"]``'s keys from the element ``columns``."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.get_default_dtype())
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    inputs = {"pos": pos.to(device=device, dtype=dtype), "batch": batch.to(device)}
    for key, width in info["onehot"].items():
        inputs[key] = torch.nn.functional.one_hot(columns, width).to(device=device, dtype=dtype)
    return inputs
