"""Verdicts on measured tables: is a block used, what is each leg's outcome, which orders a pruning step
drops, and the report's verdict tables built from them (:func:`verdict_tables`). Each outcome is
``needed`` (some interval lies wholly above the threshold), ``dispensable`` (every interval lies below
it), ``undecided`` (an interval straddles it) or ``no denominator`` (no interval)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .features import invariants

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
    ``undecided`` (otherwise: an interval straddles it), ``no denominator`` (no interval at all); and,
    where the table says so (column ``reachable``), ``unreachable``: a block nothing downstream reads
    has no dependence outcome (its ablation changes nothing by construction, not by what was learned)."""
    g = table.assign(_low=_ends(table, "low"), _high=_ends(table, "high")).groupby(["point", "block"])
    low, high = g["_low"].transform("max"), g["_high"].transform("max")
    cut = ~table["reachable"].fillna(True).astype(bool) if "reachable" in table else \
        pd.Series(False, index=table.index)
    return pd.Series(np.select([cut, low >= threshold, high < threshold, high.isna()],
                               ["unreachable", "needed", "dispensable", "no denominator"], "undecided"),
                     index=table.index)


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


# What the verdict calls "carries information about a target": a probe that explains at least half
# the variance, at least 0.2 more than the same probe on the untrained model.
INFO_R2, INFO_SELECTIVITY = 0.5, 0.2
# a probe control whose untrained R2 (mean over initialisations) or control-task R2 is below this is
# broken (the ridge fit extrapolates wildly): selectivity against it is not information
CONTROL_FLOOR = -1.0
# Targets that correlate this strongly with the model's own target count as the same target.
SAME_TARGET_CORR = 0.95
# the thresholds the verdict is also given at, to show how it moves
SWEEP = (0.01, 0.02, 0.05, 0.10)


def flag_controls(probes: pd.DataFrame, cap, ridge: bool = True) -> pd.DataFrame:
    """``control_flag``: why a probe's controls cannot tell information from artefact (empty when they
    can): the untrained initialisations' or the control task's R2 far below 0, or (ridge) fewer
    structures than the block has features."""
    n = len(cap.arrays["index"])
    width = {(p, b): invariants(cap, p, b).shape[1] for p, b in probes[["point", "block"]].drop_duplicates().values} \
        if ridge and len(probes) else {}
    flags = []
    for r in probes.itertuples():
        why = []
        if np.isfinite(r.r2_untrained) and r.r2_untrained < CONTROL_FLOOR:
            why.append(f"untrained R2 {r.r2_untrained:.2f}")
        if np.isfinite(r.r2_control_task) and r.r2_control_task < CONTROL_FLOOR:
            why.append(f"control-task R2 {r.r2_control_task:.2f}")
        if width.get((r.point, r.block), 0) > n:
            why.append(f"{n} structures for {width[(r.point, r.block)]} features")
        flags.append("; ".join(why))
    return probes.assign(control_flag=flags)


def same_target(Y: pd.DataFrame, own: str) -> list[str]:
    """The targets of ``Y`` that count as the model's own ``own`` (correlation at least SAME_TARGET_CORR)."""
    corr = Y.corr()[own].abs()
    return sorted(corr[corr >= SAME_TARGET_CORR].index)


def _cell(row: pd.Series, t: float) -> str:
    """"used" / "unused" when every intervention agrees at threshold ``t``, else which find it unused."""
    row = row.dropna()
    low = [k for k, v in row.items() if v < t]
    return "unused" if len(low) == len(row) else "used" if not low else "used; unused under " + ", ".join(low)


def interval(r) -> str:
    """A row's scale-free utilisation with its interval (and structures used), as the verdict tables show it."""
    if not np.isfinite(r.scale_free_high):
        return "left out (no denominator)"
    n = f", n={int(r.structures)}" if "structures" in r._fields and np.isfinite(r.structures) else ""
    return f"{100 * r.scale_free:.1f}% [{100 * r.scale_free_low:.1f}, {100 * r.scale_free_high:.1f}{n}]{_worse(r)}"


def _worse(r) -> str:
    """A share of an error above 100%: the replacement is worse than the baseline the share is taken from."""
    if getattr(r, "score", "error") != "error" or not r.scale_free > 1:
        return ""
    return ", worse than zero forces" if getattr(r, "quantity", "") == "forces" else ", worse than the composition fit"


def _column(r, several: bool) -> str:
    return f"{r.intervention} ({r.quantity})" if several else r.intervention


def _leg_text(rows: pd.DataFrame) -> str:
    """One leg of one order: each quantity's scale-free interval (and raw, where it differs), the outcome."""
    parts = []
    for r in rows.itertuples():
        if not np.isfinite(r.scale_free_high) and not np.isfinite(r.raw_high):
            parts.append(f"{r.quantity}: no denominator")
            continue
        text = (f"{r.quantity} {100 * r.scale_free:.1f}% [{100 * r.scale_free_low:.1f}, {100 * r.scale_free_high:.1f}]"
                if np.isfinite(r.scale_free_high) else f"{r.quantity}")
        if r.score == "error":
            text += f" (raw {100 * r.raw:+.1f}% [{100 * r.raw_low:.1f}, {100 * r.raw_high:.1f}]){_worse(r)}"
        parts.append(text)
    outcome = rows["outcome"].iloc[0]
    return "; ".join(parts) + (f": {outcome}" if outcome else "")


def order_verdicts(legs: pd.DataFrame) -> pd.DataFrame:
    """Per order: each leg's intervals and outcome side by side, the verdict and the leg it rests on
    (recovery where measured, else necessity, else dependence)."""
    control = legs[legs["leg"] == "control"]
    rows = []
    for order in [o for o in legs["order"].unique() if o != "none"]:
        row, mine, found = {"order": order}, legs[legs["order"] == order], {}
        for leg in ("dependence", "recovery", "necessity"):
            part = mine[mine["leg"] == leg]
            row[leg] = _leg_text(part) if len(part) else "not measured"
            if len(part):
                found[leg] = part["outcome"].iloc[0]
        if len(control) and "recovery" in found:
            row["fine-tuning alone (control)"] = _leg_text(control.assign(outcome=""))
        rests = next(leg for leg in ("recovery", "necessity", "dependence") if leg in found)
        row["verdict"], row["rests on"] = found[rests], rests
        if rests == "recovery" and found.get("necessity", found[rests]) != found[rests]:  # a short budget vs retraining
            row["verdict"] += f" (necessity: {found['necessity']})"
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_tables(util, probes, eq, hidden, threshold, copies, target, legs=None) -> dict:
    """The report's verdict: used, unused, unreachable and degenerate blocks, the orders to drop (on
    recovery where measured), the best information held beyond the own target, the per-block table, the
    orders table, the threshold sweep, the per-intervention grid and the joint rows."""
    rows_all = util[util["point"].isin(hidden)]
    per_block = rows_all.drop_duplicates(["point", "block"])
    collapsed = (per_block["degenerate"].astype(bool) if "degenerate" in per_block else
                 pd.Series(False, index=per_block.index))
    unreachable = per_block[~per_block["reachable"] & ~collapsed]  # a collapsed block is degenerate, not wired off
    unused = per_block[per_block["reachable"] & ~per_block["used"] & ~collapsed]
    drop = orders_to_drop(util, threshold, hidden)
    orders = order_verdicts(legs) if legs is not None else None
    if legs is not None and (legs["leg"] == "recovery").any():
        drop = dispensable(legs)  # the verdict on orders rests on recovery where measured
    both = pd.concat([probes, eq], ignore_index=True)
    both = both[both["point"].isin(hidden) & ~both["target"].isin(copies) & (both["target"] != target)]
    info = both[(both["r2"] >= INFO_R2) & (both["selectivity"] >= INFO_SELECTIVITY) & both["above_controls"]
                & (both["control_flag"].fillna("") == "")]
    best = info.sort_values("selectivity", ascending=False).groupby("target", sort=False).head(1)
    rows = []
    several = "quantity" in util and util["quantity"].nunique() > 1
    dependence = dict(zip(zip(util["point"], util["block"]), outcomes(util, threshold)))
    for r in per_block.itertuples():
        carried = info[(info["point"] == r.point) & (info["block"] == r.block)]["target"].tolist()
        row = {"point": r.point, "block": r.block, "l": r.l}
        for k in rows_all[(rows_all["point"] == r.point) & (rows_all["block"] == r.block)].itertuples():
            row[_column(k, several)] = interval(k)
        row["verdict"] = ("degenerate (negligible norms and gradients)" if getattr(r, "degenerate", False) else
                          "unreachable by construction" if not r.reachable else
                          "undetermined (no denominator)" if dependence[(r.point, r.block)] == "no denominator" else
                          "used" if r.used else "unused")
        row["dependence"] = dependence[(r.point, r.block)]
        row["holds information on (probes)"] = ", ".join(carried)
        rows.append(row)
    joint = util[util["point"] == "all"]
    grid = util[(util["point"].isin(hidden) | (util["point"] == "all")) & util["reachable"]]
    by = grid.pivot_table(index=["point", "block"], columns="intervention", values="scale_free_high", sort=False,
                          aggfunc="max")  # the larger over the quantities scored: unused only if unused for each
    by_threshold = pd.DataFrame({f"{100 * t:g}%": [_cell(row, t) for _, row in by.iterrows()] for t in SWEEP},
                                index=by.index).reset_index()
    sweep = []
    for t in SWEEP:
        used = verdicts(util, t)
        blocks = util[util["point"].isin(hidden) & util["reachable"] & ~used].drop_duplicates(["point", "block"])
        sweep.append({"threshold": f"{100 * t:g}%", "unused blocks": ", ".join(f"{p} {b}" for p, b in
                                                                           blocks[["point", "block"]].values) or "none",
                      "orders to drop": ", ".join(f"l={l}" for l in orders_to_drop(util, t, hidden)) or "none"})
    return {"unused": unused[["point", "block"]].values.tolist(),
            "unreachable": unreachable[["point", "block"]].values.tolist(),
            "degenerate": per_block[collapsed][["point", "block"]].values.tolist(),
            "used": per_block[per_block["used"] & ~collapsed][["point", "block"]].values.tolist(),
            "drop": drop, "best_other": best,
            "table": pd.DataFrame(rows), "copies": copies, "orders": orders, "sweep": pd.DataFrame(sweep), "grid": by_threshold,
            "joint": pd.DataFrame([{"order": r.block, "intervention": r.intervention,
                                    **({"quantity": r.quantity} if several else {}),
                                    "scale-free utilisation": interval(r)} for r in joint.itertuples()])}
