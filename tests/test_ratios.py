"""Intervals a referee checks at the seeds a study really has: Welch at unequal seeds, Fieller's interval for
a ratio where dividing by b's mean undercovers, the pooled average over strata, the exact permutation p and
the family-wise corrections."""
import numpy as np
import pytest
from scipy import stats

from irrepprobe.metrics.paired import (false_discovery, fieller, leave_one_out, permutation_p, seed_difference,
                                       stratified_log_ratio)


def test_welch_covers_at_unequal_seeds_where_the_pooled_variance_interval_does_not():
    # the small arm is the noisy one: Student's pooled variance is dominated by the big, quiet arm
    rng = np.random.default_rng(3)
    welch = pooled = 0
    n = 2000
    for _ in range(n):
        a, b = rng.normal(0.11, 0.02, 3), rng.normal(0.10, 0.003, 8)
        r = seed_difference(a, b)
        welch += r["ci_low"] <= 0.01 <= r["ci_high"]
        ci = stats.ttest_ind(a, b, equal_var=True).confidence_interval()
        pooled += ci.low <= 0.01 <= ci.high
    assert 0.93 <= welch / n <= 0.975, welch / n
    assert pooled / n < 0.85, pooled / n


@pytest.mark.parametrize("na,nb", [(5, 3), (8, 4)])
def test_fiellers_ratio_interval_covers_where_the_plug_in_interval_undercovers(na, nb):
    # a twice as large as b, b's runs spread 10%: b's uncertainty moves the ratio, the plug-in ignores it
    rng = np.random.default_rng(na * 10 + nb)
    hit_f = hit_plug = 0
    n = 2000
    for _ in range(n):
        a, b = rng.normal(2.0, 0.02, na), rng.normal(1.0, 0.1, nb)
        r = seed_difference(a, b)
        hit_f += r["rel_low"] <= 1.0 <= r["rel_high"]
        hit_plug += r["ci_low"] / b.mean() <= 1.0 <= r["ci_high"] / b.mean()
    assert 0.93 <= hit_f / n <= 0.975, hit_f / n
    assert hit_plug / n < 0.88, hit_plug / n


def test_fieller_matches_the_plug_in_when_b_is_exact_and_refuses_an_unbounded_ratio():
    a = np.array([1.1, 1.3, 1.2])
    lo, hi = fieller(a, np.array([1.0, 1.0 + 1e-12, 1.0 - 1e-12]))
    ci = stats.ttest_1samp(a, 1.2).confidence_interval()
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-6)
    assert np.isnan(fieller(a, np.array([-1.0, 1.0, 0.1]))).all()  # b's mean indistinguishable from zero


def test_the_pooled_average_over_strata_covers_and_ignores_units():
    rng = np.random.default_rng(1)
    K = 12
    scale = rng.uniform(0.01, 5, K)  # targets in different units
    effect = rng.normal(-0.1, 0.08, K)  # log ratios that differ between strata
    cv_a, cv_b = rng.uniform(0.01, 0.08, K), rng.uniform(0.01, 0.08, K)
    hits, n = 0, 2000
    for _ in range(n):
        pairs = [(rng.normal(scale[k] * np.exp(effect[k]), cv_a[k] * scale[k], 3),
                  rng.normal(scale[k], cv_b[k] * scale[k], 3)) for k in range(K)]
        r = stratified_log_ratio(pairs)
        hits += r["rel_low"] <= np.expm1(effect.mean()) <= r["rel_high"]
    assert 0.93 <= hits / n <= 0.975, hits / n
    pairs = [(rng.normal(1.0, 0.01, 3), rng.normal(1.25, 0.01, 3)) for _ in range(4)]
    r = stratified_log_ratio(pairs)
    same = stratified_log_ratio([(1000 * a, 1000 * b) for a, b in pairs])
    assert r["relative"] == pytest.approx(same["relative"]) and r["p"] == pytest.approx(same["p"])
    assert r["relative"] == pytest.approx(-0.2, abs=0.02) and r["rel_high"] < 0 and r["strata"] == 4


def test_the_permutation_p_is_exact():
    assert permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)  # 3 vs 3 cannot go below 0.1
    assert permutation_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert permutation_p([1, 2, 3], [1, 2, 3]) == 1.0
    r = seed_difference([0.10, 0.11, 0.12, 0.105], [0.20, 0.21, 0.19, 0.2])
    assert r["p_perm"] == pytest.approx(2 / 70)


def test_leave_one_out_drops_each_seed_and_each_pair():
    t = leave_one_out([0.10, 0.11, 0.12, 0.30], [0.20, 0.21, 0.19])
    assert len(t) == 4 + 3 + 4 * 3
    assert set(zip(t["seeds_a"], t["seeds_b"])) == {(3, 3), (4, 2), (3, 2)}
    no_outlier = t[(t["dropped_a"] == 3) & (t["dropped_b"] == -1)].iloc[0]
    assert no_outlier["rel_high"] < 0 and no_outlier["p"] < t["p"].max()


def test_holm_and_benjamini_yekutieli_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    assert false_discovery(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.20])
    c = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert false_discovery(p, "by") == pytest.approx(np.minimum(1, false_discovery(p) * c))
    with pytest.raises(ValueError):
        false_discovery(p, "bonf")
