"""Which orders to drop, and the config without them."""
from __future__ import annotations

import pandas as pd

from ..adapters.irrepprobe.surgery import config_without


def orders_to_drop(util: pd.DataFrame, threshold: float, points: list[str] | None = None) -> list[int]:
    """Orders l > 0 whose every reachable block is unused at every layer (``points``: default all but
    the joint rows), and whose joint ablation (point ``"all"``: the order replaced at every layer at
    once, what removing it takes away) is unused too. Unused: the upper end of the scale-free interval
    below ``threshold`` under every intervention (tables without intervals: raw utilisation below it).
    Blocks unreachable by construction, or degenerate (negligible norms and gradients), do not count
    either way."""
    from ..metrics.utilisation import verdicts

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


# the pruned config is the model's config without the orders (one definition, in models)
pruned_config = config_without
