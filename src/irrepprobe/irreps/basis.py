"""Features of a family that does not use e3nn's basis, brought into it: for each order l the matrix that
takes the family's 2l+1 components to e3nn's, found by fitting both families' spherical harmonics on random
directions. Works for any real basis of the same functions (another order of the m components, other signs or
normalisation, Cartesian vectors for l=1), whatever e3nn version is installed (e3nn's own l=1 order changed
between versions)."""
from __future__ import annotations

from typing import Callable

import torch
from e3nn import o3

from ..errors import IrrepprobeError


def to_e3nn(harmonics: Callable[[torch.Tensor], torch.Tensor], l: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    """[2l+1, 2l+1] Q with ``e3nn_Y_l(r) = harmonics(r) @ Q`` on unit vectors r, for ``harmonics`` taking
    [n, 3] directions to the family's [n, 2l+1] components of order l. Features that transform like the
    family's harmonics then transform like e3nn's after ``@ Q``. Refused when no such matrix fits (the
    family's functions are not a basis of order l)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)
    ours = torch.as_tensor(harmonics(r), dtype=torch.float64)
    theirs = o3.spherical_harmonics(l, r, normalize=False)
    if ours.shape != theirs.shape:
        raise IrrepprobeError(f"harmonics of order {l} must give [{n}, {2 * l + 1}], got {list(ours.shape)}")
    Q = torch.linalg.lstsq(ours, theirs).solution
    resid = (ours @ Q - theirs).norm() / theirs.norm()
    if resid > 1e-6 or torch.linalg.matrix_rank(Q) < 2 * l + 1:
        raise IrrepprobeError(f"the given functions are not a basis of order {l} (residual {resid:.2g})")
    return Q


def cartesian() -> torch.Tensor:
    """Q of :func:`to_e3nn` for Cartesian vectors (x, y, z), l = 1."""
    return to_e3nn(lambda r: r, 1)
