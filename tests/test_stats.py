"""Statistics across seeds, checked against hand-computed values, scipy and brute-force enumeration.

The module is imported as a whole (not by name) so that a missing function fails its own tests only.
"""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from overfitlab.analysis import stats as st


def enumerated_mann_whitney(a, b) -> tuple[float, float]:
    """Exact two-sided p and the smallest attainable p by trying every split of the pooled values.

    Independent of the module: U by counting pairs (ties one half), no ranks, no recursion.
    """
    pooled, n_a = np.concatenate([a, b]).astype(float), len(a)
    center = len(a) * len(b) / 2

    def deviation(mask):
        x, y = pooled[mask], pooled[~mask]
        return abs((x[:, None] > y).sum() + 0.5 * (x[:, None] == y).sum() - center)

    masks = []
    for chosen in itertools.combinations(range(len(pooled)), n_a):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[list(chosen)] = True
        masks.append(mask)
    devs = np.array([deviation(m) for m in masks])
    observed = deviation(np.arange(len(pooled)) < n_a)
    return float(np.mean(devs >= observed - 1e-9)), float(np.mean(devs >= devs.max() - 1e-9))


def test_mann_whitney_separated_groups_with_few_and_enough_seeds():
    small = st.mann_whitney([1, 2, 3], [4, 5, 6])
    # Exact two-sided test, complete separation: p = 2 / C(6, 3) = 0.1, U = 0, every a below every b.
    assert small["U"] == 0 and small["p"] == pytest.approx(0.1) and small["cliffs_delta"] == -1
    assert small["note"] == "N too small: p cannot go below 0.1"
    five = st.mann_whitney([10, 11, 12, 13, 14], [1, 2, 3, 4, 5])
    assert five["p"] == pytest.approx(2 / 252) and five["cliffs_delta"] == 1 and five["note"] == ""


def test_mann_whitney_with_ties_is_exact_not_scipys_normal_approximation():
    # The case: scipy's default gives p = 0.047 with all values tied within each group.
    tied = st.mann_whitney([1, 1, 1], [0.9, 0.9, 0.9])
    assert stats.mannwhitneyu([1, 1, 1], [0.9, 0.9, 0.9]).pvalue < 0.05  # what the old code reported
    assert tied["p"] == pytest.approx(0.1) and tied["smallest_p"] == pytest.approx(0.1)
    assert tied["p_method"] == "exact" and tied["note"] == "N too small: p cannot go below 0.1"
    # 3 vs 4 with a tie inside a: scipy's default says 0.044, below the 2 / C(7, 3) = 0.057 floor.
    three_four = st.mann_whitney([1, 1, 1], [0.9, 0.8, 0.7, 0.6])
    assert three_four["p"] == pytest.approx(2 / 35) and three_four["smallest_p"] == pytest.approx(2 / 35)
    assert three_four["p"] >= three_four["smallest_p"]


def test_tie_floor_comes_from_the_distribution_not_the_tie_free_formula():
    # Two tied blocks of unequal size make the distribution lopsided: only "a = the three 1s" is as
    # extreme as observed, so p = 1 / 35, below the tie-free floor 2 / 35, and no note is due.
    lopsided = st.mann_whitney([1, 1, 1], [0.9, 0.9, 0.9, 0.9])
    assert lopsided["p"] == pytest.approx(1 / 35) and lopsided["smallest_p"] == pytest.approx(1 / 35)
    assert lopsided["note"] == "" and st.smallest_p(3, 4) == pytest.approx(2 / 35)
    # All values tied: nothing can be detected, whatever N.
    flat = st.mann_whitney([0.9] * 5, [0.9] * 5)
    assert flat["p"] == 1 and flat["smallest_p"] == 1 and flat["note"] == "too many ties: p cannot go below 1"


@pytest.mark.parametrize("seed", range(12))
def test_mann_whitney_matches_enumeration_on_random_tied_samples(seed):
    rng = np.random.default_rng(seed)
    n_a, n_b = rng.integers(1, 7, size=2)
    a, b = (rng.choice([0.8, 0.9, 0.95, 1.0], size=n, p=[0.2, 0.3, 0.2, 0.3]) for n in (n_a, n_b))
    ours = st.mann_whitney(a, b)
    p, floor = enumerated_mann_whitney(a, b)
    assert ours["p"] == pytest.approx(p, abs=1e-12) and ours["smallest_p"] == pytest.approx(floor, abs=1e-12)
    assert ours["U"] == stats.mannwhitneyu(a, b).statistic  # the statistic itself was never the problem


def test_mann_whitney_matches_scipy_exact_without_ties_and_cliffs_delta_by_counting():
    a, b = [0.81, 0.83, 0.80, 0.86, 0.79, 0.88], [0.82, 0.78, 0.77, 0.84, 0.76]
    ours = st.mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
    assert ours["U"] == ref.statistic and ours["p"] == pytest.approx(ref.pvalue)
    greater = sum(x > y for x in a for y in b)
    less = sum(x < y for x in a for y in b)
    assert ours["cliffs_delta"] == pytest.approx((greater - less) / 30)


def test_mann_whitney_falls_back_to_monte_carlo_and_says_so():
    a, b = [0.81, 0.83, 0.80, 0.86, 0.79, 0.80], [0.82, 0.78, 0.77, 0.80, 0.76, 0.80]
    exact = st.mann_whitney(a, b)
    sampled = st.mann_whitney(a, b, max_exact_work=0, n_resamples=20_000, seed=1)
    assert exact["p_method"] == "exact" and sampled["p_method"].startswith("monte carlo (20000")
    assert sampled["p"] == pytest.approx(exact["p"], abs=0.01)
    assert sampled["smallest_p"] == pytest.approx(exact["smallest_p"], abs=0.002)


def test_smallest_p_without_ties():
    assert st.smallest_p(3, 3) == pytest.approx(0.1)
    assert st.smallest_p(5, 5) == pytest.approx(2 / 252)
    assert st.smallest_p(1, 1) == 1.0


def test_mean_ci_is_the_t_interval():
    values = np.array([0.80, 0.83, 0.79, 0.85, 0.82])
    ref = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert st.mean_ci(values) == pytest.approx(ref)
    assert st.mean_ci(values, level=0.8) == pytest.approx(
        stats.t.interval(0.8, 4, loc=values.mean(), scale=stats.sem(values))
    )
    assert st.mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(np.isnan(st.mean_ci([0.7])))
    rows = np.array([[0.80, 0.83, 0.79], [0.5, 0.6, 0.7]])
    low, high = st.mean_ci(rows)
    assert (low[1], high[1]) == pytest.approx(st.mean_ci(rows[1]))


def test_mean_ci_of_two_seeds_is_wider_than_the_two_values():
    # The percentile bootstrap returned exactly [75, 77] here, covering the true mean half the time.
    low, high = st.mean_ci([0.75, 0.77])
    half = stats.t.ppf(0.975, 1) * 0.01  # sd / sqrt(2) = 0.01
    assert (low, high) == pytest.approx((0.76 - half, 0.76 + half))
    assert low < 0.64 and high > 0.88


def test_mean_ci_cut_to_the_metric_range():
    # The microscopy source study on a CPU: one seed stuck at chance (10 %) among two at ~89 %.
    # The plain t-interval is about [-51 %, 176 %]; an accuracy's interval stays in [0, 1].
    accs = [0.8881, 0.10, 0.8958]
    low, high = st.mean_ci(accs)
    assert low < -0.4 and high > 1.6
    assert st.mean_ci(accs, bounds=(0.0, 1.0)) == (0.0, 1.0)
    assert st.mean_ci([0.80, 0.83, 0.79], bounds=(0.0, 1.0)) == pytest.approx(st.mean_ci([0.80, 0.83, 0.79]))


def test_prob_improvement_by_counting_pairs():
    a, b = [1, 2, 3], [2, 2, 4]
    # 1 beats nothing; 2 ties twice (2 x 0.5); 3 beats both 2s: (0 + 1 + 2) / 9.
    result = st.prob_improvement(a, b)
    assert result["prob_improvement"] == pytest.approx(1 / 3)
    assert result["prob_improvement_low"] < 1 / 3 < result["prob_improvement_high"]
    assert st.mann_whitney(a, b)["cliffs_delta"] == pytest.approx(2 / 3 - 1)
    assert st.prob_improvement([5, 6], [1, 2])["prob_improvement"] == 1.0


def test_prob_improvement_interval_solves_the_score_equation():
    """Each bound is a root of (estimate - theta)^2 = q^2 V(theta), found here by scipy's brentq."""
    n_a, n_b = 3, 5
    q = stats.t.ppf(0.975, n_a + n_b - 2)

    def score(theta, estimate):
        var = (
            theta
            * (1 - theta)
            / (n_a * n_b)
            * (1 + ((n_a + n_b) / 2 - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))
        )
        return (estimate - theta) ** 2 - q**2 * var

    estimates = np.arange(n_a * n_b + 1) / (n_a * n_b)
    low, high = st.prob_improvement_interval(estimates, n_a, n_b)
    for e, lo, hi in zip(estimates[1:-1], low[1:-1], high[1:-1], strict=True):
        assert lo == pytest.approx(optimize.brentq(score, 0, e, args=(e,)), abs=1e-9)
        assert hi == pytest.approx(optimize.brentq(score, e, 1, args=(e,)), abs=1e-9)
    assert low[0] == 0 and high[-1] == pytest.approx(1)
    # Complete separation keeps a real width (a Wald interval would be the point 1).
    assert high[0] == pytest.approx(1 - low[-1]) and 0.2 < low[-1] < 0.8
    assert np.all(np.diff(low) > 0) and np.all(np.diff(high) > 0) and np.all(low <= estimates)
    assert np.allclose(low, 1 - high[::-1])  # P(A > B) and P(B > A) get mirrored intervals


@pytest.mark.parametrize("n_a,n_b", [(n_a, n_b) for n_a in range(2, 8) for n_b in range(n_a, 8)])
def test_prob_improvement_interval_never_claims_more_than_the_exact_test(n_a, n_b):
    """Without ties the interval excludes 0.5 only where the exact two-sided test has p < 0.05."""
    seen = {}
    for chosen in itertools.combinations(range(n_a + n_b), n_a):
        a = np.array(chosen, dtype=float)
        u = sum(x > y for x in chosen for y in set(range(n_a + n_b)) - set(chosen))
        if u not in seen:
            seen[u] = st.mann_whitney(a, np.setdiff1d(np.arange(n_a + n_b), a))
        if len(seen) == n_a * n_b + 1:
            break
    for result in seen.values():
        excludes_half = result["prob_improvement_low"] > 0.5 or result["prob_improvement_high"] < 0.5
        assert not excludes_half or result["p"] < 0.05


def test_pairwise_compares_every_pair_within_each_dataset():
    final = pd.DataFrame(
        {
            "dataset": ["d"] * 9 + ["e"] * 2,
            "model": list("aaabbbccc") + ["a", "b"],
            "test_acc_pct": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2],
        }
    )
    table = st.pairwise(final)
    assert table[table.dataset == "d"][["a", "b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert table[table.dataset == "e"].iloc[0].note == "N too small: p cannot go below 1"
    columns = list(table.columns)
    assert columns[:7] == ["dataset", "a", "b", "n_a", "n_b", "median_a", "median_b"]
    assert {"U", "p", "p_method", "smallest_p", "note"} <= set(columns)
    at = columns.index("cliffs_delta")
    assert columns[at + 1 : at + 4] == ["prob_improvement", "prob_improvement_low", "prob_improvement_high"]
    first = table.iloc[0]
    assert first.prob_improvement == 0 and first.prob_improvement_low == 0
    assert 0.5 < first.prob_improvement_high < 1  # 3 vs 3, a below b throughout: still compatible with 0.5


def test_summary_table_interval_stays_within_0_and_100_percent():
    from overfitlab.analysis.tables import summary_table

    runs = pd.DataFrame(
        {
            "dataset": "fashion_mnist",
            "model": "deep_network",
            "seed": [0, 1, 2],
            "n_params": 372346,
            "final_test_acc": [0.8881, 0.10, 0.8958],  # seed 1 never left chance
            "final_train_acc": [0.91, 0.0975, 0.914],
            "final_gap_acc": [0.02, -0.0025, 0.018],
            "best_val_epoch": [9, 1, 9],
            "test_acc_at_best_val": [0.8881, 0.10, 0.8958],
            "oracle_best_test_acc": [0.89, 0.10, 0.90],
            "fit_epoch": [float("nan")] * 3,
        }
    )
    row = summary_table(runs).iloc[0]
    assert (row.test_acc_ci_low, row.test_acc_ci_high) == (0.0, 100.0)


def test_mann_whitney_refuses_an_empty_group():
    """An empty group has no rank sum; it used to come back as p = 0, a "significant" difference."""
    with pytest.raises(ValueError, match="two non-empty groups"):
        st.mann_whitney([], [0.9, 0.8])
    with pytest.raises(ValueError, match="two non-empty groups"):
        st.mann_whitney([0.9], [])
