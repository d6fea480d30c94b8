"""The equivariant network family: element embedding, ``layers`` interactions over spherical
harmonics of any set of orders, per-atom readout pooled over each molecule, in target units."""
from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ..config import Config
from ..data.graphs import radius_graph
from ..data.qm9 import ELEMENTS
from ..data.targets import get_target
from .layers import BesselBasis, Interaction, Readout


def hidden_irreps(muls: dict[int, int], parity: str) -> o3.Irreps:
    parities = {"natural": lambda l: [(-1) ** l], "both": lambda l: [1, -1]}[parity]
    return o3.Irreps([(muls[l], (l, p)) for l in sorted(muls) for p in parities(l)]).sort().irreps.simplify()


class Embedding(nn.Module):
    """One-hot element -> ``mul`` scalars."""

    def __init__(self, n_elements: int, irreps_out):
        super().__init__()
        self.irreps_in = o3.Irreps(f"{n_elements}x0e")
        self.irreps_out = o3.Irreps(irreps_out)
        self.linear = o3.Linear(self.irreps_in, self.irreps_out)
        self.n_elements = n_elements

    def forward(self, z):
        return self.linear(nn.functional.one_hot(z, self.n_elements).to(self.linear.weight.dtype))


class EquivariantNet(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        config.validate()
        m = config.model
        target = get_target(config.data.target)
        self.config = config
        self.target = target.name
        self.pooling = m.pooling or target.pooling
        self.cutoff = float(m.cutoff)
        self.irreps_sh = o3.Irreps(
            [(1, (l, (-1) ** l)) for l in sorted(m.ls)]
        )
        # a module (no weights) rather than a call, so that hooks reach it: a masked model zeroes an order here
        self.spherical = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        hidden = hidden_irreps(config.muls(), m.parity)
        avg = float(m.avg_neighbors) if m.avg_neighbors else 10.0

        self.embedding = Embedding(len(ELEMENTS), o3.Irreps(f"{config.muls()[0]}x0e"))
        self.radial_basis = BesselBasis(m.n_basis, m.cutoff)
        layers, irreps = [], self.embedding.irreps_out
        for _ in range(m.layers):
            layer = Interaction(irreps, self.irreps_sh, hidden, m.n_basis, m.radial_hidden, avg,
                                gate=m.gate, self_connection=m.self_connection, residual=m.residual, conv=m.conv)
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = Readout(irreps, target.irreps, m.readout_hidden)
        self.irreps_in = self.embedding.irreps_in
        self.irreps_out = self.readout.irreps_out

        # Target scale and per-element offset, fitted on the training split (see fit_output_stats).
        dim = self.irreps_out.dim
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("atom_ref", torch.zeros(len(ELEMENTS), dim))

    def forward(self, data) -> torch.Tensor:
        """Molecule-level prediction [molecules, dim] in the target's unit."""
        pos, z, batch = data.pos, data.z, data.batch
        if batch is None:
            batch = torch.zeros_like(z)
        edge_index = radius_graph(pos, batch, self.cutoff)
        vec = pos[edge_index[0]] - pos[edge_index[1]]
        r = vec.norm(dim=1)
        sh = self.spherical(vec)
        radial = self.radial_basis(r)

        x = self.embedding(z)
        cache: dict = {}  # what the layers share within this pass (the fast convolution's edge tensors)
        for layer in self.layers:
            x = layer(x, sh, radial, edge_index, cache)
        atom_out = self.readout(x) * self.scale + self.atom_ref[z]
        n_mol = int(batch.max()) + 1 if batch.numel() else 0
        out = torch.zeros(n_mol, atom_out.shape[1], dtype=atom_out.dtype, device=atom_out.device)
        out.index_add_(0, batch, atom_out)
        if self.pooling == "mean":
            out = out / torch.bincount(batch, minlength=n_mol).clamp(min=1)[:, None].to(out.dtype)
        return out

    def summary(self) -> str:
        rows = [f"EquivariantNet  target={self.target}  ls={sorted(self.config.model.ls)}  "
                f"pooling={self.pooling}  cutoff={self.cutoff} A",
                f"{'module':<14}{'irreps_in':<34}{'irreps_out':<34}{'params':>10}"]
        for name in ["embedding", *[f"layers.{i}" for i in range(len(self.layers))], "readout"]:
            mod = self.get_submodule(name)
            n = sum(p.numel() for p in mod.parameters())
            rows.append(f"{name:<14}{str(mod.irreps_in):<34}{str(mod.irreps_out):<34}{n:>10,}")
        rows.append(f"{'total':<82}{num_parameters(self):>10,}")
        return "\n".join(rows)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(config: Config) -> EquivariantNet:
    return EquivariantNet(config)


@torch.no_grad()
def fit_output_stats(model: EquivariantNet, species: torch.Tensor, ptr: torch.Tensor, y: torch.Tensor) -> None:
    """Set ``atom_ref`` (0e components: least squares on element counts, or fractions for mean pooling)
    and ``scale`` (residual std for 0e; RMS for l > 0, one number per irrep to stay equivariant)."""
    n_mol = ptr.numel() - 1
    mol = torch.repeat_interleave(torch.arange(n_mol), ptr[1:] - ptr[:-1])
    counts = torch.zeros(n_mol, len(ELEMENTS), dtype=torch.float64)
    counts.index_put_((mol, species), torch.ones(len(mol), dtype=torch.float64), accumulate=True)
    if model.pooling == "mean":
        counts = counts / counts.sum(1, keepdim=True)
    y = y.double()
    scale = torch.ones(y.shape[1], dtype=torch.float64)
    ref = torch.zeros(len(ELEMENTS), y.shape[1], dtype=torch.float64)
    for s, (mul, ir) in zip(model.irreps_out.slices(), model.irreps_out):
        block = y[:, s]
        if ir.l == 0 and ir.p == 1:
            # Ridge-regularised so that elements absent from a small subset get a zero offset.
            A = counts.T @ counts + 1e-6 * torch.eye(len(ELEMENTS), dtype=torch.float64)
            ref[:, s] = torch.linalg.solve(A, counts.T @ block)
            block = block - counts @ ref[:, s]
            scale[s] = block.std().clamp(min=1e-6) if len(block) > 1 else 1.0
        else:
            scale[s] = block.pow(2).mean().sqrt().clamp(min=1e-6)
    model.scale.copy_(scale.to(model.scale))
    model.atom_ref.copy_(ref.to(model.atom_ref))
