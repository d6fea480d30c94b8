"""Targets by name, in the units of the usual ML convention (torch_geometric's QM9), with their irreps.

Equivariant targets are stored in e3nn's basis for their irreps, so a model output of the same irreps
is compared with them directly; ``to_cartesian`` turns them back into a vector or a 3x3 tensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import torch
from e3nn import o3

from ..errors import IrrepprobeError
from .qm9 import QM9

HARTREE_EV = 27.211386
E_ANGSTROM_DEBYE = 4.80320

# QM9 atomref energies in Hartree for H, C, N, O, F (reference.md).
ATOMREF = {
    "u0": (-0.500273, -37.846772, -54.583861, -75.064579, -99.718730),
    "u": (-0.498857, -37.845355, -54.582445, -75.063162, -99.717314),
    "h": (-0.497912, -37.844411, -54.581501, -75.062219, -99.716370),
    "g": (-0.510927, -37.861317, -54.598897, -75.079532, -99.733544),
}


@dataclass(frozen=True)
class Target:
    name: str
    irreps: str
    unit: str
    pooling: str  # "sum" for extensive properties, "mean" for intensive ones
    description: str


def _t(name, unit, pooling, description, irreps="1x0e"):
    return Target(name, irreps, unit, pooling, description)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        _t("mu", "D", "sum", "dipole moment norm"),
        _t("alpha", "a0^3", "sum", "isotropic polarizability"),
        _t("homo", "eV", "mean", "HOMO energy"),
        _t("lumo", "eV", "mean", "LUMO energy"),
        _t("gap", "eV", "mean", "HOMO-LUMO gap"),
        _t("r2", "a0^2", "sum", "electronic spatial extent"),
        _t("zpve", "eV", "sum", "zero-point vibrational energy"),
        _t("u0", "eV", "sum", "internal energy at 0 K"),
        _t("u", "eV", "sum", "internal energy at 298 K"),
        _t("h", "eV", "sum", "enthalpy at 298 K"),
        _t("g", "eV", "sum", "free energy at 298 K"),
        _t("cv", "cal/(mol K)", "sum", "heat capacity at 298 K"),
        _t("u0_atom", "eV", "sum", "atomization energy at 0 K"),
        _t("u_atom", "eV", "sum", "atomization energy at 298 K"),
        _t("h_atom", "eV", "sum", "atomization enthalpy at 298 K"),
        _t("g_atom", "eV", "sum", "atomization free energy at 298 K"),
        _t("dipole_vec", "D", "sum", "Mulliken charge dipole vector", "1x1o"),
        _t("polarizability", "a0^3", "sum", "polarizability tensor (trace/sqrt3 + traceless)", "1x0e+1x2e"),
    ]
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise IrrepprobeError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}")
    return TARGETS[name]


def vector_basis() -> torch.Tensor:
    """[3, 3] matrix taking a Cartesian vector (x, y, z) to e3nn's 1o basis."""
    return o3.spherical_harmonics(1, torch.eye(3), normalize=True, normalization="norm").double()


def _matrix_basis() -> torch.Tensor:
    """[6, 3, 3] orthonormal change of basis from symmetric 3x3 to 0e+2e."""
    return o3.ReducedTensorProducts("ij=ji", i="1o").change_of_basis.double()


def target_values(qm9: QM9, name: str) -> torch.Tensor:
    """[molecules, dim] float64 values of a target in its unit."""
    get_target(name)
    if name == "dipole_vec":
        mol = qm9.molecule_of_atom()
        d = torch.zeros(len(qm9), 3, dtype=torch.float64)
        d.index_add_(0, mol, (qm9.charges[:, None] * qm9.pos).double())
        return d @ vector_basis() * E_ANGSTROM_DEBYE
    if name == "polarizability":
        return torch.einsum("kij,nij->nk", _matrix_basis(), qm9.polarizability)
    if name.endswith("_atom"):
        base = name[: -len("_atom")]
        ref = torch.tensor(ATOMREF[base], dtype=torch.float64)[qm9.species]
        total = torch.zeros(len(qm9), dtype=torch.float64).index_add_(0, qm9.molecule_of_atom(), ref)
        return ((qm9.props[base] - total) * HARTREE_EV)[:, None]
    value = qm9.props[name]
    if get_target(name).unit == "eV":
        value = value * HARTREE_EV
    return value[:, None]


def to_irreps_basis(name: str, values) -> np.ndarray:
    """A label as stored in :class:`~irrepprobe.data.structures.Structures` (scalars [n], Cartesian
    vectors [n, 3], 3x3 tensors [n, 3, 3]) -> [n, dim] in the e3nn basis of the target's irreps."""
    v = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    if v.dim() == 1:
        return v[:, None].numpy()
    if v.shape[1:] == (3,):
        return (v @ vector_basis()).numpy()
    if v.shape[1:] == (3, 3):
        return torch.einsum("kij,nij->nk", _matrix_basis(), v).numpy()
    raise IrrepprobeError(f"label {name!r} has shape {tuple(v.shape[1:])} per structure; expected a scalar, "
                          "a vector (3) or a 3x3 tensor")


def to_cartesian(name: str, values: torch.Tensor) -> torch.Tensor:
    """Undo the irreps basis: [n, 3] vectors for dipole_vec, [n, 3, 3] tensors for polarizability."""
    if name == "dipole_vec":
        return values @ vector_basis().to(values).T
    if name == "polarizability":
        return torch.einsum("kij,nk->nij", _matrix_basis().to(values), values)
    return values
