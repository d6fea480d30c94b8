"""Seeded random splits. Sizes are counts (>= 1) or fractions of the molecules in use."""
from __future__ import annotations

import torch

from ..errors import IrrepprobeError

SPLITS = ("train", "val", "test")


def make_split(
    n_total: int,
    sizes: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    subset: int | None = None,
    train_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Shuffle ``range(n_total)`` with ``seed``, keep ``subset`` molecules, cut into train/val/test.
    ``train_size``: keep only the first that many of the train split (in shuffled order), so that smaller
    training sets are subsets of larger ones and validation and test stay the same."""
    if subset is not None:
        if subset < 3:
            raise IrrepprobeError(f"subset must hold at least 3 molecules, got {subset}")
        if subset > n_total:
            raise IrrepprobeError(f"subset {subset} is larger than the {n_total} molecules available")
    n = subset if subset is not None else n_total
    if len(sizes) != 3 or any(s < 0 for s in sizes):
        raise IrrepprobeError(f"split sizes must be three non-negative numbers, got {sizes}")
    if all(s <= 1 for s in sizes):
        counts = [int(round(s * n)) for s in sizes[:2]]
        counts.append(n - sum(counts) if abs(sum(sizes) - 1) < 1e-9 else int(round(sizes[2] * n)))
    else:
        counts = [int(s) for s in sizes]
    if sum(counts) > n:
        raise IrrepprobeError(f"split sizes {counts} need {sum(counts)} molecules but only {n} are in use")
    for name, c in zip(SPLITS, counts):
        if c < 1:
            raise IrrepprobeError(f"the {name} split is empty (sizes {sizes} of {n} molecules)")
    if train_size is not None and not 1 <= train_size <= counts[0]:
        raise IrrepprobeError(f"train_size {train_size} must be between 1 and the train split's {counts[0]} molecules")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    out, start = {}, 0
    for name, c in zip(SPLITS, counts):
        keep = train_size if name == "train" and train_size is not None else c
        out[name] = perm[start : start + keep].sort().values
        start += c
    return out
