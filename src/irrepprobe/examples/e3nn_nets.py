"""e3nn's own example networks, set up for molecules of H, C, N, O and F (QM9), untrained.

Factories for the ``e3nn`` adapter (``irrepprobe capture irrepprobe.examples.e3nn_nets:simple_network``):
each returns a freshly initialised ``torch.nn.Module``, seeded by its ``seed`` argument (the global
random state is left as it was), with ``elements`` (atomic numbers, in one-hot order) attached so that
the adapter knows which column of the one-hot input is which element.

* :func:`simple_network`: ``e3nn.nn.models.v2106.gate_points_networks.SimpleNetwork``, the one-hot of
  the element as node input ``x`` (``5x0e``), one pooled scalar out (``1x0e``).
* :func:`gate_points_network`: ``e3nn.nn.models.gate_points_2101.Network``, no node input (``x`` is
  ones) and the one-hot as node attribute ``z`` (``5x0e``), one pooled scalar out.

Both are small (multiplicity 8, lmax 2, 3 gated layers) so that they run in well under a second on a
batch of QM9 molecules on a CPU. Both build their graph with ``torch.cdist``, which adds spurious
self-edges on batches above 25 atoms; only ``gate_points_2101`` gives them a message, which the
adapter avoids by batching it at most 25 atoms at a time (see :mod:`irrepprobe.adapters.e3nn.adapter`).

Untrained, ``SimpleNetwork``'s output depends on the composition only: its convolutions scale their
message by ``alpha``, initialised to 0 wherever a self-connection exists, so the pooled scalar is
built from the one-hot alone until training moves ``alpha``; its l > 0 features do see the geometry.
"""
from __future__ import annotations

import torch
from e3nn import o3

ELEMENTS = [1, 6, 7, 8, 9]  # H, C, N, O, F: QM9's elements, in one-hot order
NUM_NODES = 18.0  # QM9's mean number of atoms per molecule
NUM_NEIGHBORS = {3.0: 8.0, 4.0: 12.0, 5.0: 14.0}  # typical neighbours within the cutoff in QM9


def _neighbors(max_radius: float) -> float:
    return NUM_NEIGHBORS.get(float(max_radius), 12.0)


def simple_network(seed: int = 0, mul: int = 8, layers: int = 3, lmax: int = 2,
                   max_radius: float = 4.0) -> torch.nn.Module:
    """e3nn's v2106 ``SimpleNetwork``: one-hot ``5x0e`` in, ``1x0e`` out, summed over atoms
    (``pool_nodes=True``, divided by sqrt(18)); hidden irreps ``mul`` copies of every (l, p) up to
    ``lmax``; cutoff ``max_radius`` Angstrom."""
    from e3nn.nn.models.v2106.gate_points_networks import SimpleNetwork

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SimpleNetwork(f"{len(ELEMENTS)}x0e", "1x0e", max_radius=max_radius,
                            num_neighbors=_neighbors(max_radius), num_nodes=NUM_NODES, mul=mul, layers=layers,
                            lmax=lmax, pool_nodes=True)
    net.elements = list(ELEMENTS)
    return net.eval()


def gate_points_network(seed: int = 0, mul: int = 8, layers: int = 3, lmax: int = 2,
                        max_radius: float = 4.0) -> torch.nn.Module:
    """e3nn's ``gate_points_2101.Network``: no node input, the one-hot ``5x0e`` as node attribute
    ``z``, ``1x0e`` out summed over atoms (``reduce_output=True``, divided by sqrt(18)); hidden irreps
    ``mul`` copies of every (l, p) up to ``lmax``, edge attributes the spherical harmonics up to
    ``lmax``; cutoff ``max_radius`` Angstrom."""
    try:
        from e3nn.nn.models.gate_points_2101 import Network
    except ModuleNotFoundError as e:  # e3nn < 0.5 takes this network's radius graph from torch_cluster
        import e3nn

        from ..errors import IrrepprobeError

        raise IrrepprobeError(f"e3nn {e3nn.__version__}'s gate_points_2101 needs the package {e.name} (or e3nn "
                              ">= 0.5, which builds the graph itself)") from None

    hidden = o3.Irreps([(mul, (l, p)) for l in range(lmax + 1) for p in (1, -1)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Network(irreps_in=None, irreps_hidden=hidden, irreps_out="1x0e",
                      irreps_node_attr=f"{len(ELEMENTS)}x0e", irreps_edge_attr=o3.Irreps.spherical_harmonics(lmax),
                      layers=layers, max_radius=max_radius, number_of_basis=10, radial_layers=1,
                      radial_neurons=32, num_neighbors=_neighbors(max_radius), num_nodes=NUM_NODES,
                      reduce_output=True)
    net.elements = list(ELEMENTS)
    return net.eval()
