"""A study's plan, fixed before its runs: which comparisons are calls, on which seeds (the same seeds in both
arms), in which family of the false-discovery correction, by which test. A comparison on other seeds than its
plan's, or on fewer, is an interim look and never a call.

    study: lee
    test: welch            # Welch's t over per-seed values
    interval: fieller      # the ratio a/b - 1 with Fieller's interval
    correction: bh         # bh, by or holm, within each family
    alpha: 0.05
    families: {headline: "what the family holds"}
    comparisons:
      - {claim: "a beats b", a: "ls=0,3,4", b: "ls=0,1,2", expect: negative, family: headline,
         seeds: {1000: [0, 1, 2], 16000: [0, 1, 2, 3, 4]}, paper: -0.58, measure: test_mae, grid: curve}
    looks: [{look: 1, date: 2026-11-22, commit: abc1234, how: "what was looked at"}]
    revisions: [{revision: 1, date: 2026-12-06, change: "what", why: "why", seen: "what had been seen"}]

A revision changes the plan after it was committed; it says what had been seen of the data by then, so that a
reader can judge whether the change could have followed the results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import IrrepprobeError

KEYS = {"study", "measure", "test", "interval", "pooled", "correction", "alpha", "families", "comparisons", "looks",
        "revisions"}
REVISION = {"revision", "date", "change", "why", "seen"}
COMPARISON = {"claim", "a", "b", "expect", "family", "seeds", "paper", "measure", "grid", "pooled"}


@dataclass
class Comparison:
    claim: str
    a: str
    b: str
    expect: str
    family: str
    seeds: dict[int, list[int]]  # size -> the seeds of both arms
    paper: float | None = None
    measure: str = "test_mae"
    grid: str = "curve"
    pooled: bool = False


@dataclass
class Plan:
    study: str
    families: dict[str, str]
    comparisons: list[Comparison]
    test: str = "welch"
    interval: str = "fieller"
    correction: str = "bh"
    alpha: float = 0.05
    looks: list[dict] = field(default_factory=list)
    revisions: list[dict] = field(default_factory=list)

    def comparison(self, claim: str) -> Comparison:
        for c in self.comparisons:
            if c.claim == claim:
                return c
        raise IrrepprobeError(f"the plan of {self.study} has no comparison {claim!r}")


def _bad(where: str, what: str) -> IrrepprobeError:
    return IrrepprobeError(f"plan {where}: {what}")


def parse_plan(doc: dict, where: str = "") -> Plan:
    if not isinstance(doc, dict) or not doc.get("study"):
        raise _bad(where, "expected a mapping with a 'study'")
    unknown = set(doc) - KEYS
    if unknown:
        raise _bad(where, f"unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
    families = doc.get("families") or {}
    if doc.get("correction", "bh") not in ("bh", "by", "holm"):
        raise _bad(where, f"correction must be bh, by or holm, not {doc['correction']!r}")
    if doc.get("test", "welch") != "welch" or doc.get("interval", "fieller") != "fieller":
        raise _bad(where, "test welch and interval fieller are the ones implemented")
    comps = []
    for i, c in enumerate(doc.get("comparisons") or []):
        at = f"comparison {i + 1} ({c.get('claim', '?')!r})" if isinstance(c, dict) else f"comparison {i + 1}"
        if not isinstance(c, dict):
            raise _bad(where, f"{at}: expected a mapping")
        if "seeds_a" in c or "seeds_b" in c:
            raise _bad(where, f"{at}: a call compares the same seeds in both arms; give one 'seeds' per size "
                              "(an unbalanced comparison can only be an interim look)")
        if set(c) - COMPARISON or not {"claim", "a", "b", "expect", "family", "seeds"} <= set(c):
            raise _bad(where, f"{at}: needs claim, a, b, expect, family, seeds (may add paper, measure, grid, "
                              f"pooled), got {sorted(c)}")
        if c["expect"] not in ("negative", "positive"):
            raise _bad(where, f"{at}: expect must be negative or positive, not {c['expect']!r}")
        if c["family"] not in families:
            raise _bad(where, f"{at}: family {c['family']!r} is not among the plan's families {sorted(families)}")
        seeds = c["seeds"]
        if not isinstance(seeds, dict) or not seeds:
            raise _bad(where, f"{at}: seeds must map each size to a list of seeds")
        for size, s in seeds.items():
            if (not isinstance(s, list) or len(s) < 2 or len(set(s)) != len(s)
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in s)):
                raise _bad(where, f"{at}: seeds at {size} must be at least 2 distinct integers, got {s!r}")
        comps.append(Comparison(**{**c, "seeds": {int(k): list(v) for k, v in seeds.items()}}))
    if not comps:
        raise _bad(where, "no comparisons")
    revisions = list(doc.get("revisions") or [])
    for i, r in enumerate(revisions):
        if not isinstance(r, dict) or set(r) != REVISION:
            got = sorted(r) if isinstance(r, dict) else type(r).__name__
            raise _bad(where, f"revision {i + 1}: needs exactly {', '.join(sorted(REVISION))}, got {got}")
    return Plan(study=doc["study"], families=dict(families), comparisons=comps,
                test=doc.get("test", "welch"), interval=doc.get("interval", "fieller"),
                correction=doc.get("correction", "bh"), alpha=float(doc.get("alpha", 0.05)),
                looks=list(doc.get("looks") or []), revisions=revisions)


def load_plan(path) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise IrrepprobeError(f"plan {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise IrrepprobeError(f"plan {path}: not YAML ({str(e).splitlines()[0]})") from None
    return parse_plan(doc, str(path))


def look(planned: list[int], seeds_a, seeds_b) -> str:
    """What a comparison on ``seeds_a`` against ``seeds_b`` is under a plan of ``planned`` seeds per arm:
    ``primary`` only on exactly the planned seeds in both arms, else an interim look, named so."""
    sa, sb, p = sorted(seeds_a), sorted(seeds_b), sorted(planned)
    if sa == p and sb == p:
        return "primary"
    kind = "unbalanced" if len(sa) != len(sb) else "balanced"
    return f"interim look ({len(sa)}/{len(sb)} seeds, {kind}; planned {len(p)}/{len(p)})"
