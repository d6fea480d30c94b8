"""Molecules as torch_geometric graphs; edges within a cutoff, built in plain torch per batch."""
from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

from .qm9 import QM9


def radius_graph(pos: torch.Tensor, batch: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Directed edges (source, target) between distinct atoms of one molecule closer than ``cutoff``.

    Molecules are padded to a dense [B, A, A] distance block, which for QM9 (A <= 29) is faster than
    any neighbour search and needs no compiled extension.
    """
    n_mol = int(batch.max()) + 1 if batch.numel() else 0
    counts = torch.bincount(batch, minlength=n_mol)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(batch.numel(), device=pos.device) - start[batch]
    width = int(counts.max()) if n_mol else 0
    dense = pos.new_zeros(n_mol, width, 3)
    dense[batch, slot] = pos
    valid = torch.zeros(n_mol, width, dtype=torch.bool, device=pos.device)
    valid[batch, slot] = True
    dist = torch.cdist(dense, dense)
    keep = (dist < cutoff) & valid[:, :, None] & valid[:, None, :]
    keep &= ~torch.eye(width, dtype=torch.bool, device=pos.device)
    b, i, j = keep.nonzero(as_tuple=True)
    return torch.stack([start[b] + j, start[b] + i])  # messages flow from j (source) to i (target)


class MoleculeDataset(torch.utils.data.Dataset):
    """Selected molecules of a :class:`QM9` with one target, as ``Data(z, pos, y, idx)``."""

    def __init__(self, qm9: QM9, indices: torch.Tensor, y: torch.Tensor):
        self.qm9, self.indices, self.y = qm9, indices, y

    def __len__(self) -> int:
        return self.indices.numel()

    def __getitem__(self, k: int) -> Data:
        i = int(self.indices[k])
        a, b = int(self.qm9.ptr[i]), int(self.qm9.ptr[i + 1])
        return Data(
            z=self.qm9.species[a:b],
            pos=self.qm9.pos[a:b],
            y=self.y[i : i + 1].float(),
            idx=torch.tensor([i]),
            num_nodes=b - a,
        )


def collate(items: list[Data]) -> Batch:
    return Batch.from_data_list(items)


def loader(qm9: QM9, y: torch.Tensor, indices: torch.Tensor, batch_size: int, sampler=None):
    """A DataLoader over ``indices`` (in order unless a sampler is given) yielding ``Batch`` objects."""
    return torch.utils.data.DataLoader(
        MoleculeDataset(qm9, indices, y), batch_size=batch_size, sampler=sampler,
        shuffle=False, collate_fn=collate,
    )
