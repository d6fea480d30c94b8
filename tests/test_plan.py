"""A study's plan: the committed plans load, an unbalanced or ill-formed plan is refused in one line, and a
comparison off its planned seeds is an interim look, never a primary call."""
from pathlib import Path

import pytest

from irrepprobe.errors import IrrepprobeError
from irrepprobe.experiments.plan import load_plan, look, parse_plan

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"study": "s", "families": {"f": "one claim"},
        "comparisons": [{"claim": "a beats b", "a": "x", "b": "y", "expect": "negative", "family": "f",
                         "seeds": {1000: [0, 1, 2]}}]}


@pytest.mark.parametrize("study", ["lee", "miller"])
def test_the_committed_plans_load_and_every_claim_names_a_family(study):
    plan = load_plan(ROOT / "analyses" / study / "plan.yaml")
    assert plan.study == study and plan.looks
    for c in plan.comparisons:
        assert c.family in plan.families and all(len(s) >= 2 for s in c.seeds.values())


def test_the_lee_plan_fixes_five_against_five_at_16k_and_a_converged_pair():
    plan = load_plan(ROOT / "analyses" / "lee" / "plan.yaml")
    head = plan.comparison("Lee et al.: [0,3,4,5,6] beats [0,1,2,3,4]")
    assert head.seeds[16000] == [0, 1, 2, 3, 4] and head.family == "headline"
    assert plan.comparison("Lee et al.: [0,3,4,5,6] beats [0,1,2,3,4], trained to convergence").grid == "converge"


@pytest.mark.parametrize("change,message", [
    ({"seeds_a": {1000: [0, 1]}}, "same seeds in both arms"),
    ({"family": "g"}, "not among the plan's families"),
    ({"expect": "lower"}, "expect must be"),
    ({"seeds": {1000: [0]}}, "at least 2 distinct"),
    ({"seeds": {1000: [0, 0]}}, "at least 2 distinct"),
    ({"colour": "red"}, "needs claim"),
])
def test_a_bad_plan_is_refused_in_one_line(change, message):
    doc = {**GOOD, "comparisons": [{**GOOD["comparisons"][0], **change}]}
    with pytest.raises(IrrepprobeError, match=message) as e:
        parse_plan(doc, "p.yaml")
    assert "\n" not in str(e.value)
    parse_plan(GOOD)  # the unchanged plan is fine
    with pytest.raises(IrrepprobeError, match="unknown keys"):
        parse_plan({**GOOD, "seed": 3})


def test_a_revision_must_say_what_had_been_seen():
    rev = {"revision": 1, "date": "2026-12-06", "change": "c", "why": "w", "seen": "validation curves only"}
    assert parse_plan({**GOOD, "revisions": [rev]}).revisions == [rev]
    del rev["seen"]
    with pytest.raises(IrrepprobeError, match="revision 1: needs exactly .*seen"):
        parse_plan({**GOOD, "revisions": [rev]})


def test_only_the_planned_seeds_in_both_arms_make_a_primary_call():
    assert look([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], range(5)) == "primary"
    assert look([0, 1, 2, 3, 4], [0, 1, 2, 3], range(5)).startswith("interim look (4/5 seeds, unbalanced")
    assert look([0, 1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3]).startswith("interim look (4/4 seeds, balanced")
    assert look([0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2]) != "primary"  # more than planned is no call either
