"""The report's first screen in words: what was measured (the header), what to read first (warnings),
and the summary lines (orders, blocks, what a pruning step would drop, how sure, information held)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as M
from ..metrics.recovery import LEGS
from ..metrics.verdicts import interval


def describe(q: str, kind: str, meta) -> str:
    if q == "forces":
        return "forces (error against the data's per-atom forces)" if kind == "error" else \
            "forces (shift of the model's own forces, relative to their root mean square)"
    return (f"{q} (error against {meta['target']})" if kind == "error" else
            f"{q} (shift of the model's own prediction" + (" per atom" if meta["quantity"].get("per_atom") else "")
            + ", relative to its spread)")


def header(meta, util) -> list[str]:
    """What was measured, in a few lines: data, the function (head or fidelity), quantities, equivariance."""
    from ..capture.equivariance import equivariance_line

    n, periodic = meta["n_molecules"], meta.get("periodic")
    lines = [f"Data: {meta['data']}, {n} structures" + (
        "" if periodic is None else f", {periodic} of them periodic (cell and pbc)" if periodic else
        ", none periodic") + "."]
    heads = meta.get("heads") or []
    if len(heads) > 1:
        word = "fidelity (modality)" if meta["adapter"] == "sevenn" else "head"
        lines.append(f"Function measured: {word} {meta.get('head')} of {', '.join(map(str, heads))}.")
    if "quantity" in util:
        scored = util.drop_duplicates("quantity")
        text = "; ".join(describe(r.quantity, r.score, meta) for r in scored.itertuples())
        lines.append(f"Quantities scored: {text}" + ("" if (util["quantity"] == "forces").any() else
                                                     " (no forces: not computed by this family, or not asked for)")
                     + ".")
    ref = meta.get("reference")
    if isinstance(ref, dict) and ref.get("other_reference"):
        from ..capture.run import reference_line

        line = reference_line(ref, meta["quantity"].get("unit", ""))
        lines.append(line[0].upper() + line[1:] + ".")
    eq = meta.get("equivariance", "absent")
    lines.append("Equivariance: " + ("not checked (a capture from before the check)" if eq == "absent" else
                                     "not checked (--check-equivariance 0)" if eq is None else equivariance_line(eq))
                 + ".")
    return lines


def equivariance_failed(meta) -> bool:
    eq = meta.get("equivariance")
    return isinstance(eq, dict) and eq.get("passed") is False


def _failure(eq: dict) -> str:
    """A failed equivariance check in words: what moved, by how much, where, and the likely cause."""
    from ..capture.equivariance import percent

    tol = eq["tolerance"]
    moved = []
    if eq["output_max_rel"] >= tol:
        moved.append(f"its output changes by {percent(eq['output_max_rel'])}")
    if eq.get("forces_max_rel") is not None and eq["forces_max_rel"] >= tol:
        moved.append(f"its forces by {percent(eq['forces_max_rel'])}")
    n_blocks = sum(" " in b for b in eq["failed_blocks"])
    if n_blocks:
        moved.append(f"{n_blocks} feature block{'s' if n_blocks > 1 else ''} by up to "
                     f"{percent(eq['features_max_rel'])} (worst: {eq['worst']})")
    cause = eq.get("cause")
    return (f"on {eq['structures']} randomly rotated structures, {' and '.join(moved) or 'some value is not finite'} "
            f"under rotation, against a tolerance of {tol:g}" + (f". Likely cause: {cause}" if cause else "")
            + ". Which irreps a model uses is not a meaningful question while rotating a structure changes its "
            "output or its features' invariants: the order and block verdicts below are not meaningful for this "
            "model (equivariance.csv in the capture has every block)")


def read_first(meta, util, checks) -> list[str]:
    """Lines that come before any verdict: a model that is not equivariant, denominators that degenerate."""
    out = []
    eq = meta.get("equivariance")
    if equivariance_failed(meta):
        out.append(f"**The model failed the equivariance check** {_failure(eq)}.")
    elif isinstance(eq, dict) and eq.get("passed", True) is None:
        out.append(f"**The equivariance check tested nothing**: its {eq['structures']} structures are all lone atoms, "
                   "which a rotation about themselves leaves as they were for a model built on relative positions; "
                   "capture structures of two or more atoms (not all on one line) to check the model.")
    ref = meta.get("reference")
    if isinstance(ref, dict) and ref.get("other_reference") and ref.get("kept"):
        from ..capture.run import reference_found

        out.append(f"**Label {ref['label']} is probably on another reference** (kept: named with --target): "
                   + reference_found(ref, meta["quantity"].get("unit", "")) + "; errors against it, and the "
                   "verdicts below that rest on them, mostly measure that offset.")
    for r in checks.itertuples():
        out.append(f"**{r.check}**" + (f" ({r.quantity})" if isinstance(r.quantity, str) else "") + f": {r.message}.")
    if len(util) and not np.isfinite(util["scale_free_high"]).any():
        out.append("**No verdict**: no quantity has a denominator on this data, so no block is called used or "
                   "unused and no order is proposed for pruning.")
    return out


def rests_on(util) -> str:
    if "quantity" not in util:
        return "dependence: this trained checkpoint with each block replaced (ablation)"
    ok = [q for q, v in util.groupby("quantity", sort=False)["scale_free_high"] if np.isfinite(v).any()]
    out = [q for q in util["quantity"].unique() if q not in ok]
    return ("dependence: this trained checkpoint with each block replaced (ablation), scored on "
            + (" and ".join(ok) if ok else "nothing") + (f"; {', '.join(out)} left out (see above)" if out else "")
            + "; a block is unused only when it is unused for each quantity scored")


LEG_WORDS = {"dependence": "this checkpoint with the order zeroed at every point",
             "recovery": "the damage left after fine-tuning with the order masked, beyond what the same "
                         "fine-tuning does to the unmasked model",
             "necessity": "a model retrained from scratch without the order"}


def leg_claim(leg: str, outcome: str) -> str:
    """An order's outcome on one leg as a claim about what that leg asks: this checkpoint (dependence) or
    the architecture (recovery, necessity)."""
    if leg == "dependence":
        return {"needed": "this checkpoint depends on it", "dispensable": "this checkpoint does not depend on it",
                "undecided": "undecided whether this checkpoint depends on it",
                "unreachable": "nothing downstream reads it"}.get(outcome, "dependence not measurable")
    return {"needed": "the architecture needs it", "dispensable": "the architecture does not need it",
            "undecided": "undecided whether the architecture needs it"}.get(outcome, f"{leg} not measurable")


NOT_MEANINGFUL = "not meaningful: the model is not equivariant"


def _order_lines(verdict, util, legs, threshold, meaningful: bool = True) -> list[str]:
    """One line per order l > 0: in bold the claim with the leg it rests on and its outcome, then what that
    leg measured with its interval, the other legs' outcomes, and what was not measured."""
    lines = []
    tail = "" if meaningful else f", {NOT_MEANINGFUL}"
    if verdict.get("orders") is not None:
        for r in verdict["orders"].to_dict("records"):
            rests = r["rests on"]
            outcome = r["verdict"].split(" (")[0]
            others = [f"{leg}: {legs[(legs['order'] == r['order']) & (legs['leg'] == leg)]['outcome'].iloc[0]}"
                      for leg in LEGS if leg != rests and r.get(leg, "not measured") != "not measured"]
            text = r[rests].rsplit(": ", 1)[0] if r[rests].endswith(f": {outcome}") else r[rests]
            missing = ("; whether the architecture needs it: not measured (`--recovery` fine-tunes without it)"
                       if rests == "dependence" else "")
            lines.append(f"**{r['order']}: {leg_claim(rests, outcome)} ({rests}: {outcome}){tail}**: "
                         f"{LEG_WORDS[rests]}, {text}" + (f". Beside it, {'; '.join(others)}" if others else "")
                         + missing + ".")
        return lines
    joint = util[(util["point"] == "all") & (util["intervention"] != "removed")]
    if not len(joint):
        return lines
    joint = joint.assign(outcome=M.outcomes(joint, threshold))
    for order, rows in joint.groupby("block", sort=False):
        worst = next(rows.loc[[rows["scale_free"].idxmax() if rows["scale_free"].notna().any() else rows.index[0]]]
                     .itertuples())
        outcome = rows["outcome"].iloc[0]
        lines.append(f"**{order}: {leg_claim('dependence', outcome)} (dependence: {outcome}){tail}**: the order "
                     f"replaced at every point at once, {worst.intervention}"
                     + (f", {worst.quantity}" if "quantity" in rows else "") + f": {interval(worst)}; whether the "
                     "architecture needs it: not measured (`--recovery` fine-tunes without it).")
    return lines


def summary(meta, verdict, util, legs, spread, threshold) -> list[str]:
    """The first screen: which orders the model needs (and on which leg that rests), which blocks it uses,
    what a pruning step would drop, how sure, and what blocks hold (information) as against use."""
    used, unused = verdict["used"], verdict["unused"]
    names = lambda blocks: ", ".join(f"{p} {b}" for p, b in blocks)  # noqa: E731
    meaningful = not equivariance_failed(meta)
    tail = "" if meaningful else f" ({NOT_MEANINGFUL})"
    lines = _order_lines(verdict, util, legs, threshold, meaningful)
    lines.append(f"**Blocks** (dependence, this checkpoint, threshold {threshold:.0%}"
                 + ("" if meaningful else f"; {NOT_MEANINGFUL}") + f"): {len(used)} of "
                 f"{len(used) + len(unused)} reachable blocks used" + (f"; unused: {names(unused)}" if unused else "")
                 + (f"; unreachable by construction (nothing downstream reads them): {names(verdict['unreachable'])}"
                    if verdict["unreachable"] else "")
                 + (f"; degenerate (negligible norms and gradients): {names(verdict['degenerate'])}"
                    if verdict["degenerate"] else "") + ".")
    on = ("recovery" if legs is not None and (legs["leg"] == "recovery").any() else "dependence")
    model = Path(meta["model"]).name
    drop = verdict["drop"]
    lines.append(f"**A pruning step would drop**{tail}: " + (
        ", ".join(f"l={l}" for l in drop) + f" (resting on {on}): `irrepprobe prune {model} --drop-l "
        f"{drop[0]}" + (f" --format {meta['adapter']} --trust" if meta["adapter"] != "irrepprobe" else "")
        + " --data ...` writes the smaller model and compares it" if drop else
        f"nothing (resting on {on}: no order is dispensable"
        + ("; an undecided one needs a longer fine-tuning budget or more structures" if on == "recovery" else
           "; dependence is about this checkpoint, `--recovery` asks whether the architecture needs an order")
        + ")") + ".")
    n = int(util["structures"].max()) if "structures" in util else int(util["molecules"].iloc[0])
    if spread is not None:
        ratio = spread["spread_ratio"].replace([np.inf, -np.inf], np.nan).dropna()
        sure = (f"{int(spread['seeds'].max())} training runs measured: the spread across them is a median "
                f"{ratio.median():.1f}x this model's within-model standard error (see Across seeds)" if len(ratio) else
                f"{int(spread['seeds'].max())} training runs measured (see Across seeds)")
    else:
        sure = ("these intervals are within this one model: a retrained model can move more (in the Lee study a "
                "median 8x the bootstrap standard error); `--seeds` sets other training runs beside them")
    lines.append(f"**How sure**: 95% paired bootstrap intervals over up to {n} structures; {sure}.")
    best = verdict["best_other"]
    status = {(r["point"], r["block"]): r["verdict"] for r in verdict["table"].to_dict("records")}
    use = {"used": "used", "unused": "unused: held, not used"}
    held = [f"{r.target} in {r.point} {r.block} (R2 {r.r2:.2f}, selectivity {r.selectivity:+.2f}; the block is "
            + use.get(status.get((r.point, r.block), ""), status.get((r.point, r.block), "?").split(" (")[0]
                      + ": held, never used") + ")" for r in best.itertuples()]
    if verdict.get("maps") is not None:
        m = verdict["maps"]
        col = "map looks structured (components)"
        reach = m[m["verdict"].isin(["used", "unused"])]
        agree = reach[reach[col] == (reach["verdict"] == "used")]
        lines.append(f"**Lee et al.'s map criterion**: {int(m[col].sum())} of {len(m)} blocks' maps look structured "
                     f"(raw components, against permuted, untrained and composition nulls); on reachable blocks it "
                     f"agrees with dependence for {len(agree)} of {len(reach)}.")
    lines.append("**Information held is not use**: probes say what a block holds, ablation and recovery what the "
                 "model uses; held beyond the model's own target: " + ("; ".join(held) if held else "nothing") + ".")
    return lines


def probe_warnings(probes: pd.DataFrame) -> list[str]:
    flagged = probes[probes["control_flag"].fillna("") != ""] if "control_flag" in probes else probes.iloc[:0]
    if not len(flagged):
        return []
    return [f"**{len(flagged)} probe rows have broken controls** ({flagged['control_flag'].iloc[0]}, ...): their "
            "selectivity is not a finding, and they count for nothing in the summary."]
