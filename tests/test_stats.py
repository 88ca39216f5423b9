"""Statistics across seeds, checked against hand-computed values and scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from overfitlab.analysis.stats import bootstrap_ci, mann_whitney, pairwise, smallest_p


def test_mann_whitney_separated_groups_with_few_and_enough_seeds():
    small = mann_whitney([1, 2, 3], [4, 5, 6])
    # Exact two-sided test, complete separation: p = 2 / C(6, 3) = 0.1, U = 0, every a below every b.
    assert small["U"] == 0 and small["p"] == pytest.approx(0.1) and small["cliffs_delta"] == -1
    assert small["note"] == "N too small: p cannot go below 0.1"
    five = mann_whitney([10, 11, 12, 13, 14], [1, 2, 3, 4, 5])
    assert five["p"] == pytest.approx(2 / 252) and five["cliffs_delta"] == 1 and five["note"] == ""


def test_mann_whitney_matches_scipy_and_cliffs_delta_by_counting():
    a, b = [0.81, 0.83, 0.80, 0.86, 0.79], [0.82, 0.78, 0.77, 0.80, 0.76]
    ours = mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert ours["U"] == ref.statistic and ours["p"] == pytest.approx(ref.pvalue)
    greater = sum(x > y for x in a for y in b)
    less = sum(x < y for x in a for y in b)
    assert ours["cliffs_delta"] == pytest.approx((greater - less) / 25)


def test_smallest_p():
    assert smallest_p(3, 3) == pytest.approx(0.1)
    assert smallest_p(5, 5) == pytest.approx(2 / 252)
    assert smallest_p(1, 1) == 1.0


def test_bootstrap_ci_is_scipys_percentile_interval():
    values = np.array([0.80, 0.83, 0.79, 0.85, 0.82])
    low, high = bootstrap_ci(values, seed=4)
    ref = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=9999, method="percentile",
                          random_state=np.random.default_rng(4)).confidence_interval
    assert (low, high) == pytest.approx((ref.low, ref.high))
    assert values.min() <= low < values.mean() < high <= values.max()
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(np.isnan(bootstrap_ci([0.7])))


def test_pairwise_compares_every_pair_within_each_dataset():
    final = pd.DataFrame({"dataset": ["d"] * 9 + ["e"] * 2, "model": list("aaabbbccc") + ["a", "b"],
                          "test_acc_pct": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2]})
    table = pairwise(final)
    assert table[table.dataset == "d"][["a", "b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert table[table.dataset == "e"].iloc[0].note == "N too small: p cannot go below 1"
