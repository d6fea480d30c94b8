"""Early stopping on the validation MAE, with a minimum relative improvement (as Keras' and Lightning's
``min_delta``, relative here so that one value serves targets of any scale)."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStop:
    """``patience`` epochs without an epoch whose validation MAE is below ``ref * (1 - delta)`` stop the run
    (0: never). ``ref`` moves only on such an epoch; the best checkpoint follows the lowest MAE, any drop.
    With ``delta`` 0 both are the same rule: any decrease counts."""

    patience: int
    delta: float = 0.0
    ref: float = math.inf
    bad: int = 0
    epochs: int = 0
    stopped_at: int | None = None  # the epoch at which the rule first said stop

    def step(self, val_mae: float) -> bool:
        """Count one epoch; True when it is a (large enough) improvement."""
        self.epochs += 1
        better = val_mae < self.ref * (1.0 - self.delta)
        if better:
            self.ref, self.bad = val_mae, 0
        else:
            self.bad += 1
        if self.stop and self.stopped_at is None:
            self.stopped_at = self.epochs
        return better

    @property
    def stop(self) -> bool:
        return bool(self.patience) and self.bad >= self.patience

    @classmethod
    def replay(cls, patience: int, delta: float, vals) -> "EarlyStop":
        """The state after ``vals`` (a run's validation MAEs so far), so that a resumed run counts by the rule
        it resumes under, also when that rule changed (``stopped_at`` then says if it had stopped already)."""
        rule = cls(patience, delta)
        for v in vals:
            rule.step(v)
        return rule
