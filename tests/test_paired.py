"""Seed-level comparisons of configurations: coverage by simulation, the false-discovery correction, and
the paper's effect size against an interval."""
import numpy as np
import pytest

from irrepprobe.metrics.paired import against_paper, false_discovery, paired_difference, seed_difference


def _simulate(seeds: int, n_sim: int, rng) -> tuple[float, float]:
    """Two configurations whose true MAEs differ by 0.01; each trained model's MAE on the same molecules is
    its configuration's plus a run-to-run shift (sd 0.006 for a, 0.003 for b) plus per-molecule noise.
    Returns the coverage of seed_difference's interval and of the molecule bootstrap's."""
    hit_t = hit_boot = 0
    mols = 60
    base = rng.gamma(2.0, 0.05, mols)  # every model's errors share the molecules' difficulty
    for _ in range(n_sim):
        a = 0.11 + rng.normal(0, 0.006, (seeds, 1)) + base + rng.normal(0, 0.01, (seeds, mols))
        b = 0.10 + rng.normal(0, 0.003, (seeds, 1)) + base + rng.normal(0, 0.01, (seeds, mols))
        truth = 0.01
        r = seed_difference(a, b)
        hit_t += r["ci_low"] <= truth <= r["ci_high"]
        if seeds == 3:
            q = paired_difference(a, b, n_boot=300, seed=int(rng.integers(1 << 30)))
            hit_boot += q["ci_low"] <= truth <= q["ci_high"]
    return hit_t / n_sim, hit_boot / n_sim


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_seed_level_interval_covers_at_its_nominal_level(seeds):
    rng = np.random.default_rng(seeds)
    cover, _ = _simulate(seeds, 2000 if seeds == 5 else 1500, rng)
    assert 0.93 <= cover <= 0.975, cover  # Welch's interval at 95%, under run-to-run variation


def test_the_molecule_bootstrap_treats_seeds_as_fixed_and_undercovers():
    rng = np.random.default_rng(7)
    _, boot = _simulate(3, 150, rng)
    assert boot < 0.9  # why comparisons of configurations use seed_difference


def test_seed_difference_reports_per_seed_maes_and_a_welch_p():
    r = seed_difference([0.10, 0.11, 0.12], [0.20, 0.21, 0.19])
    assert r["diff"] == pytest.approx(-0.09) and r["ci_high"] < 0 and r["p"] < 0.01
    assert r["per_seed_a"] == "0.1 0.11 0.12" and r["seeds_b"] == 3
    same = seed_difference([0.10, 0.12, 0.11], [0.11, 0.10, 0.12])
    assert same["ci_low"] < 0 < same["ci_high"] and same["p"] > 0.5
    with pytest.raises(ValueError):
        seed_difference([0.1], [0.2, 0.3])  # one seed: no spread to infer from


def test_false_discovery_control_matches_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    q = false_discovery(p)
    # sorted 0.01, 0.03, 0.04, 0.20 (m=4): q = min over the tail of p_k * m / k
    assert q[:4] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert np.isnan(q[4])
    assert (q[:4] >= p[:4]).all()


def test_the_papers_effect_size_is_inside_or_excluded():
    assert against_paper(-0.16, 0.05, -0.58) == "paper's effect size excluded"
    assert against_paper(-0.70, 0.05, -0.58) == "paper's effect size inside the interval"
    assert against_paper(-0.1, 0.1, None) == ""


def test_a_call_stands_only_below_the_false_discovery_threshold():
    from irrepprobe.metrics.paired import corrected

    assert corrected("reproduced", 0.01) == "reproduced"
    assert corrected("reproduced", 0.09) == "not decidable after the false-discovery correction"
    assert corrected("not reproduced", np.nan).startswith("not decidable")
    assert corrected("not decidable at this scale", 0.01) == "not decidable at this scale"


def test_within_group_rank_correlation_ignores_group_offsets_and_finds_a_planted_link():
    from irrepprobe.metrics.paired import within_group_spearman

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 6)
    offset = rng.normal(0, 5, 12)[g]
    # across groups x and y move together (the offsets); within groups they are unrelated
    x, y = offset + rng.normal(size=len(g)), offset + rng.normal(size=len(g))
    from scipy import stats
    assert stats.spearmanr(x, y).statistic > 0.8  # what pooling without standardising would report
    null = within_group_spearman(x, y, g, n_perm=500)
    assert abs(null["rho"]) < 0.3 and null["p"] > 0.05 and null["groups"] == 12
    planted = within_group_spearman(x, offset - 0.8 * (x - offset) + 0.3 * rng.normal(size=len(g)), g, n_perm=500)
    assert planted["rho"] < -0.6 and planted["p"] < 0.01
    flat = within_group_spearman(np.ones(6), np.arange(6.0), np.zeros(6))
    assert flat["degenerate"] == 1 and np.isnan(flat["rho"])


def test_the_within_group_permutation_test_holds_its_level_under_the_null():
    from irrepprobe.metrics.paired import within_group_spearman

    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(6), 6)
    ps = [within_group_spearman(rng.normal(size=36), rng.normal(size=36), g, n_perm=199, seed=k)["p"]
          for k in range(200)]
    assert 0.01 <= np.mean(np.array(ps) <= 0.05) <= 0.10
