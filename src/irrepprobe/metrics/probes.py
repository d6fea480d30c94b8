"""Linear probes: what a block's pooled features say about targets, next to two controls.

* :func:`ridge_probe`: standardised invariants -> scalar targets, ridge with the penalty chosen per
  target by efficient leave-one-out CV (``RidgeCV``).
* :class:`EquivariantProbe`: pooled l > 0 channels -> a vector or tensor target as a weighted sum of
  channels. Its weights are scalars, so rotating the input rotates the prediction: it cannot invent
  direction information that the block does not carry.

Scores are out-of-fold R2 (K-fold over molecules). Controls:

* control models: the same probe on several untrained initialisations of the same architecture
  (``r2_untrained``: their mean, ``r2_untrained_sd`` and ``r2_untrained_max``); selectivity =
  r2 - r2_untrained, and ``above_controls`` when r2 beats every initialisation;
* a control task (Hewitt and Liang 2019): the labels shuffled within groups of structures of equal
  composition (``r2_control_task``), which keeps all a probe could read from element counts and breaks
  what the geometry says; ``selectivity_task`` = r2 - r2_control_task;
* shuffled labels (``r2_shuffled``, expected near 0).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..capture import Capture
from ..data.targets import to_irreps_basis
from ..errors import IrrepprobeError
from .features import block_info, check_same_structures, composition, invariants, label

ALPHAS = np.logspace(-4, 4, 17)


def ridge_probe(alphas=ALPHAS):
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))


def r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R2 per target column."""
    sse = ((y - pred) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1 - sse / sst, np.nan)


def out_of_fold(estimator, X, Y, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Predictions of ``estimator`` for every sample from a model fitted on the other folds."""
    if len(X) < 2 * folds:
        raise IrrepprobeError(f"a {folds}-fold probe needs at least {2 * folds} molecules, got {len(X)}")
    pred = np.zeros_like(Y, dtype=np.float64)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(X):
        pred[test] = estimator.fit(X[train], Y[train]).predict(X[test]).reshape(pred[test].shape)
    return pred


def cv_r2(estimator, X, Y, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold R2 per target column (scalar targets [n, t]) or one R2 (vector targets [n, d])."""
    pred = out_of_fold(estimator, X, Y, folds, seed)
    if isinstance(estimator, EquivariantProbe):
        return np.array([equivariant_r2(Y, pred)])
    return r2(Y, pred)


def equivariant_r2(y: np.ndarray, pred: np.ndarray) -> float:
    """One R2 for a vector or tensor target [n, d], against the only equivariant constant, zero:
    ``1 - sum |y - pred|^2 / sum |y|^2``. (A mean vector is not a rotation-free baseline: QM9 molecules
    sit in a standard orientation, so their mean dipole is not zero in the lab frame.)"""
    return float(1 - ((y - pred) ** 2).sum() / (y**2).sum())


class EquivariantProbe(RegressorMixin, BaseEstimator):
    """``y_n = sum_c w_c v_nc`` for channels ``v_nc`` [n, mul, 2l+1] and targets ``y_n`` [n, 2l+1]:
    ridge over scalar weights, no intercept (a constant vector would not rotate), channels scaled by
    their RMS norm (a scalar per channel, so still equivariant), penalty chosen by inner K-fold CV."""

    def __init__(self, alphas=ALPHAS, folds: int = 5, seed: int = 0):
        self.alphas, self.folds, self.seed = alphas, folds, seed

    @staticmethod
    def _moments(V, Y):
        return np.einsum("ncd,ned->ce", V, V), np.einsum("ncd,nd->c", V, Y), float((Y**2).sum())

    @staticmethod
    def _solve(A, b, alpha, n):
        return np.linalg.solve(A + alpha * n * np.eye(len(A)), b)

    def fit(self, V, Y):
        V, Y = np.asarray(V, np.float64), np.asarray(Y, np.float64)
        if V.ndim != 3 or Y.ndim != 2 or V.shape[0] != Y.shape[0] or V.shape[2] != Y.shape[1]:
            raise IrrepprobeError(f"EquivariantProbe needs channels [n, mul, d] and targets [n, d]; got "
                                  f"{V.shape} and {Y.shape}")
        self.channel_scale_ = np.sqrt((V**2).sum(2).mean(0)).clip(min=1e-12)
        Vs = V / self.channel_scale_[None, :, None]
        # squared error on a held-out fold from its moments: |y|^2 - 2 w.b + w.A w
        errors = np.zeros(len(self.alphas))
        for tr, te in KFold(min(self.folds, len(V)), shuffle=True, random_state=self.seed).split(Vs):
            (A, b, _), (At, bt, yy) = self._moments(Vs[tr], Y[tr]), self._moments(Vs[te], Y[te])
            for k, alpha in enumerate(self.alphas):
                w = self._solve(A, b, alpha, len(tr))
                errors[k] += yy - 2 * w @ bt + w @ At @ w
        self.alpha_ = float(self.alphas[int(np.argmin(errors))])
        A, b, _ = self._moments(Vs, Y)
        self.coef_ = self._solve(A, b, self.alpha_, len(Vs)) / self.channel_scale_
        return self

    def predict(self, V):
        return np.einsum("ncd,c->nd", np.asarray(V, np.float64), self.coef_)

    def score(self, V, Y, sample_weight=None):
        return equivariant_r2(np.asarray(Y, np.float64), self.predict(V))


def _controls(cap: Capture, control) -> list[Capture]:
    controls = [] if control is None else [control] if isinstance(control, Capture) else list(control)
    for c in controls:
        check_same_structures(cap, c)
    return controls


def shuffle_within(Y: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """``Y`` with its rows permuted within each group of equal ``groups`` rows (e.g. element counts)."""
    rng = np.random.default_rng(seed)
    _, label = np.unique(np.asarray(groups), axis=0, return_inverse=True)
    out = Y.copy()
    for g in np.unique(label):
        rows = np.flatnonzero(label.ravel() == g)
        out[rows] = Y[rng.permutation(rows)]
    return out


def _rows(point, block, info, names, scores, shuffled, task, untrained):
    """``untrained``: [controls, targets] scores (possibly no controls)."""
    u = np.asarray(untrained, float).reshape(-1, len(names)) if len(untrained) else np.full((1, len(names)), np.nan)
    for k, name in enumerate(names):
        mean = float(np.mean(u[:, k]))
        yield {"point": point, "block": block, "l": info["l"], "parity": "e" if info["parity"] == 1 else "o",
               "target": name, "r2": scores[k], "r2_shuffled": shuffled[k], "r2_control_task": task[k],
               "selectivity_task": scores[k] - task[k], "r2_untrained": mean,
               "r2_untrained_sd": float(np.std(u[:, k], ddof=1)) if len(u) > 1 else np.nan,
               "r2_untrained_max": float(np.max(u[:, k])), "selectivity": scores[k] - mean,
               "above_controls": bool(len(untrained)) and bool(scores[k] > np.max(u[:, k])),
               "controls": len(untrained)}


def probe_scores(cap: Capture, targets: pd.DataFrame, control=None, points=None,
                 folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Ridge probes from each block's invariants to every column of ``targets`` (one row per captured
    molecule): out-of-fold R2, and the controls of the module docstring (``control``: one untrained
    capture or a list of them, over the same structures)."""
    controls = _controls(cap, control)
    Y = targets.to_numpy(np.float64)
    Y_shuffled = Y[np.random.default_rng(seed).permutation(len(Y))]
    Y_task = shuffle_within(Y, composition(cap), seed)
    rows = []
    for p in points or cap.points:
        for b in cap.blocks(p):
            X = invariants(cap, p, b)
            scores = cv_r2(ridge_probe(), X, Y, folds, seed)
            shuffled = cv_r2(ridge_probe(), X, Y_shuffled, folds, seed)
            task = cv_r2(ridge_probe(), X, Y_task, folds, seed)
            untrained = [cv_r2(ridge_probe(), invariants(c, p, b), Y, folds, seed) for c in controls]
            rows += _rows(p, b, block_info(cap, p, b), list(targets.columns), scores, shuffled, task, untrained)
    return pd.DataFrame(rows)


def equivariant_targets(cap: Capture) -> dict[str, tuple[int, np.ndarray]]:
    """Every vector label (l = 1) and the traceless part of every 3x3 tensor label (l = 2) of the
    captured structures, in e3nn's basis (the basis of the model's own features): name -> (l, [n, 2l+1]).
    For QM9: the dipole vector and the polarizability. Caveat, measured: qm9pack's polarizability
    tensors are not in the frame of the geometries (they align with the molecules' principal axes
    instead), so no equivariant function of the geometry can fit their 2e part; its probe scores stay
    near zero."""
    out = {}
    for name, info in cap.meta.get("labels", {}).items():
        if info["shape"] == [3]:
            out[name] = (1, to_irreps_basis(name, label(cap, name)))
        elif info["shape"] == [3, 3]:
            out[f"{name}[2e]"] = (2, to_irreps_basis(name, label(cap, name))[:, 1:6])
    return out


def equivariant_probe_scores(cap: Capture, targets: dict[str, tuple[int, np.ndarray]], control=None,
                             points=None, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Equivariant probes from the summed channels of every block of the target's order l (either
    parity: models without parity, such as SevenNet's, carry vectors as ``1e``), with the controls of
    the module docstring."""
    controls = _controls(cap, control)
    rows = []
    for name, (l, Y) in targets.items():
        Y_shuffled = Y[np.random.default_rng(seed).permutation(len(Y))]
        Y_task = shuffle_within(Y, composition(cap), seed)
        for p in points or cap.points:
            for b in cap.blocks(p):
                if block_info(cap, p, b)["l"] != l:
                    continue
                V = cap.pooled(p, b, "vector_sum")
                probe = (lambda V_, Y_: cv_r2(EquivariantProbe(seed=seed), V_, Y_, folds, seed))
                untrained = [probe(c.pooled(p, b, "vector_sum"), Y) for c in controls]
                rows += _rows(p, b, block_info(cap, p, b), [name], probe(V, Y), probe(V, Y_shuffled),
                              probe(V, Y_task), untrained)
    return pd.DataFrame(rows, columns=COLUMNS)


COLUMNS = ["point", "block", "l", "parity", "target", "r2", "r2_shuffled", "r2_control_task", "selectivity_task",
           "r2_untrained", "r2_untrained_sd", "r2_untrained_max", "selectivity", "above_controls", "controls"]
