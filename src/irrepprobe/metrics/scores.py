"""What an intervention moves, per structure, and the scales that make it relative: :class:`Scorer` (the
model's own quantity), :class:`ForceScorer` (forces), and the composition baseline (a least-squares fit on
element counts) that the scale-free score measures against."""
from __future__ import annotations

import numpy as np
import torch
from e3nn import o3

from ..capture import Capture


class Scorer:
    """What an ablation moves, per structure: the absolute error against ``target`` (``error``), or
    without a target the absolute shift of the prediction from ``base`` (``shift``, per atom for
    extensive quantities). Two scores of a change: raw, relative to the unablated error (or to the
    prediction's spread for ``shift``); scale-free, relative to what the model learned beyond the
    composition baseline (``composition``: that baseline's predictions) or, for ``shift``, the spread.
    Predictions may cover only the first rows (a sequential ablation stopped early): every score is over
    the rows given."""

    def __init__(self, base: torch.Tensor, target: np.ndarray | None, n_atoms: np.ndarray, per_atom: bool,
                 composition: np.ndarray | None = None, name: str = "energy"):
        self.base, self.kind, self.name = base, "error" if target is not None else "shift", name
        self.target = None if target is None else torch.as_tensor(target, dtype=torch.float64)
        self.norm = torch.as_tensor(n_atoms, dtype=torch.float64)[:, None] if per_atom else torch.ones(len(base), 1)
        self.base_per = self.per_structure(base)
        self.comp_per = (None if target is None or composition is None else
                         np.abs(np.asarray(composition, np.float64) - np.asarray(target, np.float64)).mean(1))
        self._scaled = (base / self.norm).numpy()
        self.spread = self.spread_of(np.arange(len(base)))

    def per_structure(self, pred: torch.Tensor) -> np.ndarray:
        n = len(pred)
        diff = pred - self.target[:n] if self.kind == "error" else (pred - self.base[:n]) / self.norm[:n]
        return diff.abs().mean(1).numpy()

    def spread_of(self, rows) -> float:
        b = self._scaled[rows]
        return float(np.abs(b - b.mean(0)).mean())

    def score(self, pred: torch.Tensor) -> float:
        return float(self.per_structure(pred).mean())

    def relative(self, value: float, base_value: float, rows=None) -> float:
        if self.kind == "error":
            return (value - base_value) / base_value if base_value > 0 else float("nan")
        spread = self.spread if rows is None else self.spread_of(rows)
        return value / spread if spread > 0 else float("nan")

    def scale(self, rows) -> float:
        """The denominator of the scale-free score on the structures ``rows``."""
        if self.kind == "shift":
            return self.spread_of(rows)
        if self.comp_per is None:
            return float("nan")
        return float(self.comp_per[rows].mean() - self.base_per[rows].mean())


class ForceScorer:
    """The same two scores for forces, built batch by batch (forces cost a backward pass, so only the
    structures a sequential ablation reaches get them). Per structure: the mean absolute force component
    error against ``labels`` (``error``; scale-free against the zero-force baseline, which is what a fit
    on element counts predicts for forces: ``(MAE ablated - MAE) / (mean |F| - MAE)``), or without labels
    the mean absolute change of the model's own force components (``shift``), relative to their root mean
    square over the structures (raw and scale-free are then the same number)."""

    def __init__(self, labels: np.ndarray | None = None, name: str = "forces"):
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.float64)
        self.kind, self.name = ("error" if labels is not None else "shift"), name
        self._ref, self._base, self._zero, self._sq, self._count = {}, [], [], [], []

    def add_base(self, k: int, forces: torch.Tensor, atom_batch: torch.Tensor, atoms: torch.Tensor, n: int) -> None:
        """Batch ``k``'s unablated forces; ``atoms``: the rows of its atoms in the scored structures."""
        f = forces.detach().double().cpu()
        ref = self.labels[atoms] if self.labels is not None else f
        self._ref[k] = (ref, atom_batch.cpu(), n)
        self._base.append(self._per(f, k))
        self._zero.append(self._per(torch.zeros_like(f), k))
        sq = torch.zeros(n, dtype=torch.float64).index_add_(0, atom_batch.cpu(), f.pow(2).sum(1))
        self._sq.append(sq.numpy())
        self._count.append(3 * torch.bincount(atom_batch.cpu(), minlength=n).double().numpy())

    def _per(self, f: torch.Tensor, k: int) -> np.ndarray:
        ref, batch, n = self._ref[k]
        dev = (f.detach().double().cpu() - ref).abs().sum(1)
        atoms = torch.bincount(batch, minlength=n).double().clamp(min=1)
        return (torch.zeros(n, dtype=torch.float64).index_add_(0, batch, dev) / (3 * atoms)).numpy()

    def per_batch(self, k: int, forces: torch.Tensor) -> np.ndarray:
        return self._per(forces, k)

    @property
    def base_per(self) -> np.ndarray:
        return np.concatenate(self._base)

    def rms(self, rows) -> float:
        sq, count = np.concatenate(self._sq), np.concatenate(self._count)
        return float(np.sqrt(sq[rows].sum() / max(count[rows].sum(), 1)))

    def relative(self, value: float, base_value: float, rows=None) -> float:
        if self.kind == "error":
            return (value - base_value) / base_value if base_value > 0 else float("nan")
        rms = self.rms(np.arange(len(self.base_per)) if rows is None else rows)
        return value / rms if rms > 0 else float("nan")

    def scale(self, rows) -> float:
        if self.kind == "shift":
            return self.rms(rows)
        return float(np.concatenate(self._zero)[rows].mean() - self.base_per[rows].mean())


def composition_baseline(cap: Capture) -> np.ndarray | None:
    """[structures, k] the least-squares fit of the capture's target on element counts (and a constant),
    over all captured structures; zero for l > 0 components (no composition fit is equivariant). None
    without a target."""
    if "target" not in cap.arrays:
        return None
    A = np.c_[cap.arrays["composition"], np.ones(len(cap.targets))]
    return composition_fit(A, cap.targets, A, cap.meta["quantity"]["irreps"])


def composition_fit(A_fit: np.ndarray, y_fit: np.ndarray, A_at: np.ndarray, irreps) -> np.ndarray:
    """[rows of ``A_at``, k] the least-squares fit of ``y_fit`` on the element counts (and constant) ``A_fit``,
    at ``A_at``; zero for the l > 0 components of ``irreps`` (no composition fit is equivariant)."""
    y_fit = np.asarray(y_fit, dtype=np.float64).reshape(len(A_fit), -1)
    fit = A_at @ np.linalg.lstsq(A_fit, y_fit, rcond=None)[0]
    irreps = o3.Irreps(irreps)
    if irreps.dim == y_fit.shape[1]:
        for s, (_, ir) in zip(irreps.slices(), irreps):
            if ir.l > 0:
                fit[:, s] = 0
    return fit
