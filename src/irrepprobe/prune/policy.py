"""Which orders to drop, and the config without them."""
from __future__ import annotations

import pandas as pd
from e3nn import o3

from ..config import Config
from ..data import get_target
from ..errors import IrrepprobeError


def orders_to_drop(util: pd.DataFrame, threshold: float, points: list[str] | None = None) -> list[int]:
    """Orders l > 0 whose every reachable block is unused at every layer (``points``: default all but
    the joint rows), and whose joint ablation (point ``"all"``: the order replaced at every layer at
    once, what removing it takes away) is unused too. Unused: the upper end of the scale-free interval
    below ``threshold`` under every intervention (tables without intervals: raw utilisation below it).
    Blocks unreachable by construction do not count either way."""
    from ..metrics.utilisation import verdicts

    util = util.copy()
    if "reachable" not in util:
        util["reachable"] = True
    util["_used"] = verdicts(util, threshold) if "scale_free_high" in util else util["utilisation"] >= threshold
    per_block = util[(util["point"] != "all") & util["reachable"]]
    if points is not None:
        per_block = per_block[per_block["point"].isin(points)]
    drop = []
    for l in sorted(set(per_block["l"]) - {0}):
        joint = util[(util["point"] == "all") & (util["l"] == l)]["_used"]
        if not per_block[per_block["l"] == l]["_used"].any() and not joint.any():
            drop.append(int(l))
    return drop


def pruned_config(config: Config, drop: list[int]) -> Config:
    """``config`` without the orders in ``drop``: gone from the spherical harmonics and from the hidden
    irreps. Refuses l = 0, orders the model does not have, and orders its output needs."""
    drop = sorted({int(l) for l in drop})
    ls = sorted(config.model.ls)
    if 0 in drop:
        raise IrrepprobeError("l=0 is never dropped: the scalars carry the readout and the gates")
    missing = [l for l in drop if l not in ls]
    if missing:
        raise IrrepprobeError(f"cannot drop l={missing[0]}: the model's orders are {ls}")
    target = get_target(config.data.target)
    needed = sorted({ir.l for _, ir in o3.Irreps(target.irreps)} & set(drop))
    if needed:
        raise IrrepprobeError(f"cannot drop l={needed[0]}: the target {target.name} ({target.irreps}) needs it "
                              "in the last layer")
    new = Config.from_dict(config.to_dict())
    new.model.ls = [l for l in ls if l not in drop]
    if isinstance(new.model.mul, dict):
        new.model.mul = {int(l): m for l, m in new.model.mul.items() if int(l) not in drop}
    return new.validate()
