"""Random rotations, drawn from their own generator (the global random state is untouched)."""
from __future__ import annotations

import torch
from e3nn import o3


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    """[n, 3, 3] float64 rotations drawn uniformly from SO(3) (normalised Gaussian quaternions),
    from their own generator seeded by ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return o3.quaternion_to_matrix(q / q.norm(dim=1, keepdim=True))
