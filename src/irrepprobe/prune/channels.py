"""Which channels a pruned model keeps: the ``--channels`` SPEC read against the model (before any work),
the channels chosen by importance (:func:`~irrepprobe.metrics.channels.channel_importance`), and ``auto``:
as many channels removed, least important per unit of cost first, as a budget of floating-point
operations (``--speedup``) asks.

SPEC: a fraction kept of every block (``0.5``), a number of channels per block (``32``), per block
(``0e:64,1e:32,2e:16``, counts or fractions; blocks not named keep all), or ``auto``. A count applies to
every group of :meth:`~irrepprobe.adapters.Adapter.channel_groups` (each hidden layer)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from e3nn import o3

from ..errors import IrrepprobeError


def hidden_blocks(groups, drop) -> dict[str, int]:
    """Block -> the largest channel count it has in any group, orders ``drop`` left out."""
    out: dict[str, int] = {}
    for _, _, irreps in groups:
        for mul, ir in o3.Irreps(irreps):
            if ir.l not in drop:
                out[str(ir)] = max(out.get(str(ir), 0), mul)
    return out


def _amount(text: str, what: str) -> float | int:
    try:
        v = float(text)
    except ValueError:
        raise IrrepprobeError(f"--channels: {what} must be a fraction in (0, 1] or a number of channels, "
                              f"got {text!r}") from None
    if "." in text or "e" in text.lower():
        if not 0 < v <= 1:
            raise IrrepprobeError(f"--channels: a fraction kept must be in (0, 1], got {text} for {what}")
        return v
    return int(v)


def parse_channels(spec: str, groups, drop=(), equal: bool = False) -> dict | str:
    """``spec`` as ``{(group, block): channels kept}`` for every group and block, or ``"auto"``; refused in
    one line when it names a block the model lacks, a fraction outside (0, 1], more channels than a block
    has, or no channel of a block (l=0: the scalars carry the energy; l>0: that is --drop-l)."""
    if not groups:
        raise IrrepprobeError("--channels: this family's surgery prunes orders only, not channels")
    spec = (spec or "").strip()
    if spec == "auto":
        return "auto"
    have = hidden_blocks(groups, drop)
    if not spec:
        raise IrrepprobeError("--channels takes a fraction (0.5), a count (32), counts per block (0e:64,1e:32) or auto")
    if ":" in spec:
        asked = {}
        for item in spec.split(","):
            name, _, amount = item.partition(":")
            name = name.strip()
            if name in hidden_blocks(groups, ()) and name not in have:
                raise IrrepprobeError(f"--channels names block {name!r}, whose order --drop-l removes")
            if name not in have:
                raise IrrepprobeError(f"--channels names block {name!r}, which the model's hidden layers lack; they "
                                      f"have {', '.join(have)}")
            asked[name] = _amount(amount.strip(), name)
    else:
        asked = {b: _amount(spec, "the amount") for b in have}
    counts = {}
    for gname, _, irreps in groups:
        for mul, ir in o3.Irreps(irreps):
            b = str(ir)
            if ir.l in drop:
                continue
            a = asked.get(b, mul)
            if isinstance(a, float):
                k = max(1, int(round(a * mul)))
            else:  # one count for every block is at most each block's; a count per block is as asked
                k = a if ":" in spec else min(a, mul)
            if k < 1:
                raise IrrepprobeError(f"--channels leaves no channel of {b}: "
                                      + ("the scalars carry the energy" if ir.l == 0 else f"drop l={ir.l} with --drop-l"))
            if k > mul:
                raise IrrepprobeError(f"--channels asks for {k} channels of {b}; {gname} has {mul}")
            counts[(gname, b)] = k
    return equalised(counts) if equal else counts


def equalised(counts: dict) -> dict:
    """The same number of channels in every block of a group (the smallest asked), as fast kernels want."""
    low: dict[str, int] = {}
    for (g, _), k in counts.items():
        low[g] = min(low.get(g, k), k)
    return {(g, b): low[g] for (g, b) in counts}


def choose(importance: pd.DataFrame, groups, counts: dict, tied=()) -> dict:
    """``keep`` for surgery (point -> block -> channels kept, ascending): at each point of a group, its
    ``counts[(group, block)]`` channels of highest ``score``; at a point of ``tied``, one set for all its
    blocks (the highest summed over them)."""
    keep: dict[str, dict[str, list[int]]] = {}
    by = {k: g for k, g in importance.groupby(["point", "block"])}
    for gname, points, _ in groups:
        for p in points:
            mine = {b: k for (g, b), k in counts.items() if g == gname and (p, b) in by}
            if p in tied and mine:
                if len(set(mine.values())) != 1:
                    raise IrrepprobeError(f"{p} keeps one set of channels for all its blocks; asked {mine}")
                total = sum(by[(p, b)].set_index("channel")["score"] for b in mine)
                best = sorted(int(u) for u in total.sort_values(ascending=False).index[:next(iter(mine.values()))])
                keep[p] = {b: best for b in mine}
                continue
            for b, k in mine.items():
                rows = by[(p, b)].sort_values(["score", "channel"], ascending=[False, True])
                keep.setdefault(p, {})[b] = sorted(int(u) for u in rows["channel"].iloc[:k])
    return keep


def _ranked(importance: pd.DataFrame, groups, drop) -> pd.DataFrame:
    """Per (group, block, rank): the score of the rank-th best channel summed over the group's points (the
    cost of removing that rank in every one of them), over the channel's size (2l+1, what it costs)."""
    rows = []
    by = {k: g for k, g in importance.groupby(["point", "block"])}
    for gname, points, irreps in groups:
        for mul, ir in o3.Irreps(irreps):
            if ir.l in drop:
                continue
            s = np.zeros(mul)
            for p in points:
                if (p, str(ir)) in by:
                    s += np.sort(by[(p, str(ir))]["score"].to_numpy())[::-1][:mul]
            rows += [{"group": gname, "block": str(ir), "rank": r, "value": s[r] / ir.dim} for r in range(mul)]
    return pd.DataFrame(rows)


def counts_at(ranked: pd.DataFrame, threshold: float) -> dict:
    """Channels kept per (group, block) when every rank worth less than ``threshold`` goes (at least one)."""
    out = {}
    for (g, b), r in ranked.groupby(["group", "block"], sort=False):
        out[(g, b)] = max(1, int((r["value"] >= threshold).sum()))
    return out


def auto_counts(importance: pd.DataFrame, groups, drop, cost, target: float, equal: bool = False) -> dict:
    """The counts with the fewest channels removed (least valuable first: :func:`_ranked`) whose ``cost``
    (counts -> relative cost, e.g. floating-point operations against the original's) is at most
    ``target``; by bisection over the thresholds. Refused when even one channel per block costs more."""
    ranked = _ranked(importance, groups, drop)
    values = np.unique(ranked["value"].to_numpy())
    fix = equalised if equal else (lambda c: c)
    lo, hi = 0, len(values)  # the threshold values[hi] (or above all) removes enough: find the smallest
    if cost(fix(counts_at(ranked, np.inf))) > target:
        raise IrrepprobeError(f"--speedup asks for a cost of {target:.3g} of the original's; with one channel per "
                              f"block this model still costs {cost(fix(counts_at(ranked, np.inf))):.3g}")
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(fix(counts_at(ranked, values[mid]))) <= target:
            hi = mid
        else:
            lo = mid + 1
    return fix(counts_at(ranked, values[hi] if hi < len(values) else np.inf))


def flops(model, batch) -> int:
    """Floating-point operations of one energy evaluation of ``batch`` (torch's FlopCounterMode: matrix
    products and tensor contractions; forces by autograd cost about as much again)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.adapter.predict(model, batch)
    return fc.get_total_flops()


def describe_counts(counts: dict, groups) -> str:
    """The channels kept per layer, as irreps (``64x0e+32x1e+16x2e``), one entry per group."""
    parts = []
    for gname, _, irreps in groups:
        kept = [f"{counts[(gname, str(ir))]}x{ir}" for _, ir in o3.Irreps(irreps) if (gname, str(ir)) in counts]
        parts.append(f"{gname}: {'+'.join(kept)}")
    return "; ".join(parts)
