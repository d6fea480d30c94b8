"""Verdicts on measured tables: is a block used, what is each leg's outcome, which orders a pruning step
drops. Each outcome is ``needed`` (some interval lies wholly above the threshold), ``dispensable`` (every
interval lies below it), ``undecided`` (an interval straddles it) or ``no denominator`` (no interval)."""
from __future__ import annotations

import numpy as np
import pandas as pd

# A block is "unused" when ablating it moves the score by less than 5 %. Ablation moves the error
# of a block the model relies on by tens to thousands of per cent; 5 % sits well below that and near
# the run-to-run spread of test error between seeds, so "unused" means "indistinguishable from noise".
THRESHOLD = 0.05


def verdicts(table: pd.DataFrame, threshold: float = THRESHOLD) -> pd.Series:
    """Per row: is its (point, block) used? Unreachable blocks never are; a reachable block is unused
    when the upper end of its scale-free interval (and of its raw one, where measured) is below
    ``threshold`` under every intervention and for every quantity scored. A block with no interval at all (every denominator degenerate) is not
    called unused: nothing was measured that could say so."""
    high = table.assign(_high=_ends(table, "high")).groupby(["point", "block"])["_high"].transform("max")
    return table["reachable"] & ~(high < threshold)


def _ends(table: pd.DataFrame, end: str) -> pd.Series:
    """Per row, the larger ``low`` or ``high`` end of its scale-free interval and (where the table has it)
    its raw one: a verdict holds only when both intervals say so. A raw end without a scale-free one (a
    denominator left out) does not count: nothing that could say 'unused' was measured."""
    free = table[f"scale_free_{end}"]
    if f"utilisation_{end}" not in table:
        return free
    return pd.concat([free, table[f"utilisation_{end}"].where(free.notna())], axis=1).max(axis=1)


def outcomes(table: pd.DataFrame, threshold: float = THRESHOLD) -> pd.Series:
    """Per row, its block's dependence outcome: ``needed`` (some intervention's interval, for some
    quantity, lies wholly above ``threshold``), ``dispensable`` (every interval lies below it),
    ``undecided`` (otherwise: an interval straddles it), ``no denominator`` (no interval at all)."""
    g = table.assign(_low=_ends(table, "low"), _high=_ends(table, "high")).groupby(["point", "block"])
    low, high = g["_low"].transform("max"), g["_high"].transform("max")
    return pd.Series(np.select([low >= threshold, high < threshold, high.isna()],
                               ["needed", "dispensable", "no denominator"], "undecided"), index=table.index)


def leg_outcomes(table: pd.DataFrame, threshold: float = THRESHOLD) -> pd.Series:
    """Per row, the outcome of its (order, leg) over every quantity and both scores (raw and scale-free):
    ``needed`` (some interval lies wholly above ``threshold``), ``dispensable`` (every interval lies below
    it), ``undecided`` (otherwise), ``no denominator`` (no interval)."""
    low = table[["raw_low", "scale_free_low"]].max(axis=1)
    high = table[["raw_high", "scale_free_high"]].max(axis=1)
    g = table.assign(_low=low, _high=high).groupby(["order", "leg"])
    low, high = g["_low"].transform("max"), g["_high"].transform("max")
    return pd.Series(np.select([low >= threshold, high < threshold, high.isna()],
                               ["needed", "dispensable", "no denominator"], "undecided"), index=table.index)


def dispensable(table: pd.DataFrame) -> list[int]:
    """Orders whose recovery leg is ``dispensable``."""
    rec = table[(table["leg"] == "recovery") & (table["outcome"] == "dispensable")]
    return sorted({int(l) for l in rec["l"]})


def orders_to_drop(util: pd.DataFrame, threshold: float, points: list[str] | None = None) -> list[int]:
    """Orders l > 0 whose every reachable block is unused at every layer (``points``: default all but
    the joint rows), and whose joint ablation (point ``"all"``: the order replaced at every layer at
    once, what removing it takes away) is unused too. Unused: the upper end of the scale-free interval
    below ``threshold`` under every intervention (tables without intervals: raw utilisation below it).
    Blocks unreachable by construction, or degenerate (negligible norms and gradients), do not count
    either way."""
    util = util.copy()
    if "reachable" not in util:
        util["reachable"] = True
    util["_used"] = verdicts(util, threshold) if "scale_free_high" in util else util["utilisation"] >= threshold
    per_block = util[(util["point"] != "all") & util["reachable"]]
    if "degenerate" in per_block:  # collapsed blocks say nothing either way
        per_block = per_block[~per_block["degenerate"].astype(bool)]
    if points is not None:
        per_block = per_block[per_block["point"].isin(points)]
    drop = []
    for l in sorted(set(per_block["l"]) - {0}):
        joint = util[(util["point"] == "all") & (util["l"] == l)]["_used"]
        if not per_block[per_block["l"] == l]["_used"].any() and not joint.any():
            drop.append(int(l))
    return drop
