"""Statistics across seeds: confidence intervals of means and non-parametric pairwise tests.

Studies afford 2-10 seeds, so every number here is built to stay honest at that size:

* ``mean_ci`` is the Student t-interval of the mean. The percentile bootstrap it replaces covers
  the true mean only ~51 % (2 seeds), ~75 % (3), ~83 % (5), ~89 % (10) of the time at nominal
  95 % (normal samples, 4000 simulations).
* ``mann_whitney`` takes its two-sided p-value from the exact permutation distribution of the
  rank sum, ties included (accuracies are k/N and often tie, e.g. at 100 %); scipy's default
  switches to a normal approximation with ties and returns p-values the sample cannot reach.
  Its ``smallest_p`` comes from that same distribution: the p-value of the most extreme split
  these sample sizes and these ties allow. Without ties, 3 vs 3 seeds cannot go below p = 0.1
  (2 vs 2: 1/3), so no pair of 3-seed groups reaches p < 0.05; ties can raise (or, when they
  make the distribution lopsided, lower) that floor. The note says so whenever the floor is above
  ``ALPHA``, so that a large p does not read as "no difference".
* ``accuracy_ci`` is ``mean_ci`` for accuracies, kept honest when seeds tie: never narrower than
  the binomial interval of the pooled accuracy on the finite evaluation set.
* ``prob_improvement`` is P(A > B) + 0.5 P(A = B) over pairs of seeds (rliable's "probability of
  improvement", U / (n_a n_b)) with a score interval whose coverage was checked by simulation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

ALPHA = 0.05
MAX_EXACT_WORK = 50_000_000  # cells updated by the exact rank-sum recursion (50 vs 50: 0.1 s)
MONTE_CARLO_RESAMPLES = 100_000


def mean_ci(values, level: float = 0.95, axis: int = -1, bounds: tuple[float, float] | None = None):
    """Student t-interval of the mean: mean +/- t_{(1+level)/2, n-1} * sd / sqrt(n), as (low, high).

    Exact for normal seed-to-seed variation at any n >= 2 (a percentile bootstrap is not: with 2
    seeds it returns [min, max], which covers the mean half the time). Simulated coverage at 95 %
    is 95 % for normal samples and 93-94 % for moderately skewed accuracies near a ceiling
    (skewness ~ -1) at n = 3-10; strongly skewed ones (exponential-like tails) get ~88 %.
    NaN with fewer than two values; zero width when all values are equal (no spread observed).
    ``bounds``: the range the metric can take (accuracy: 0, 1); the interval is cut to it, which
    never excludes the true mean, so coverage stays (one seed stuck at chance among good ones gives
    a t-interval far past 0 and 1 otherwise).
    Floats for 1-D input; for N-D input, arrays over the other axes (``axis`` holds the seeds).
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    if n < 2:
        low = high = np.full(np.delete(values.shape, axis), np.nan)
    else:
        mean = values.mean(axis=axis)
        half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def wilson_interval(successes, trials, level: float = 0.95):
    """Wilson's score interval of a binomial proportion (successes / trials), as (low, high)."""
    from scipy import stats

    z = stats.norm.ppf(0.5 + level / 2)
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return center - half, center + half


def accuracy_ci(values, n_eval: int | None, level: float = 0.95, axis: int = -1):
    """95 % interval of the mean accuracy over seeds, each evaluated on ``n_eval`` examples: the
    seeds' t-interval (``mean_ci``), or, where that is narrower, the Wilson interval of the pooled
    accuracy (all seeds' correct answers over n_seeds * n_eval). When seeds tie (all at 100 %, or a
    small test set) the t-interval has zero width although each accuracy is itself an estimate
    from n_eval examples; the binomial interval keeps that uncertainty.

    Simulated coverage (tests/test_stats_coverage.py): accuracies tied at a ceiling
    (Binomial(100, 0.995) / 100) 97-100 % at 2-10 seeds, where the t-interval alone gives 54 % (2
    seeds) and 74 % (3); normal and skewed seed-to-seed variation as ``mean_ci``'s (the binomial
    interval is the wider one in at most 2 % of those draws). Cut to [0, 1].
    ``n_eval`` None: the t-interval alone.
    """
    values = np.asarray(values, dtype=float)
    low, high = mean_ci(values, level, axis=axis, bounds=(0.0, 1.0))
    if not n_eval:
        return low, high
    n = values.shape[axis]
    successes = np.rint(values * n_eval).sum(axis=axis)
    w_low, w_high = wilson_interval(successes, n * n_eval, level)
    wider = ~((np.asarray(high) - np.asarray(low)) >= (w_high - w_low))  # NaN t-interval (1 seed): Wilson
    low, high = np.where(wider, w_low, low), np.where(wider, w_high, high)
    low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def smallest_p(n1: int, n2: int) -> float:
    """The smallest two-sided exact Mann-Whitney p-value possible with these sizes and no ties.

    ``mann_whitney`` reports the floor for the actual ties; this is the tie-free reference.
    """
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def _rank_sum_test(
    ranks2: np.ndarray,
    k: int,
    max_exact_work: int = MAX_EXACT_WORK,
    n_resamples: int = MONTE_CARLO_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, str]:
    """Two-sided permutation p of the first k of ``ranks2``, the smallest p possible, and the method.

    ``ranks2`` are doubled midranks of the pooled sample (integers, so ties stay exact); S is the
    rank sum of a random k-subset and p = P(|S - E S| >= observed). The distribution of S is
    counted exactly by a subset-sum recursion over (subset size, rank sum) - polynomial, so exact
    far beyond enumerating C(N, k) subsets; past ``max_exact_work`` it is sampled instead.
    """
    ranks2 = np.asarray(ranks2, dtype=np.int64)
    center = k * (len(ranks2) + 1)  # E S: k times the mean doubled rank
    ordered = np.sort(ranks2)
    top = int(ordered[-k:].sum())
    deviations = np.array(
        [
            abs(int(ranks2[:k].sum()) - center),  # observed, and the widest possible
            max(top - center, center - int(ordered[:k].sum())),
        ]
    )
    if len(ranks2) * (k + 1) * (top + 1) <= max_exact_work:
        counts = np.zeros((k + 1, top + 1))
        counts[0, 0] = 1.0
        for r in ranks2:  # each value either joins the subset (shift by its rank) or not
            counts[1:, r:] = counts[1:, r:] + counts[:-1, : top + 1 - r]
        dev = np.abs(np.arange(top + 1) - center)
        probs = counts[k] / counts[k].sum()
        p, floor = (probs[dev >= d].sum() for d in deviations)
        return float(p), float(floor), "exact"
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // len(ranks2))
    sampled = np.concatenate(
        [
            ranks2[
                np.argpartition(rng.random((min(chunk, n_resamples - start), len(ranks2))), k - 1, axis=1)[
                    :, :k
                ]
            ].sum(axis=1)
            for start in range(0, n_resamples, chunk)
        ]
    )
    dev = np.abs(sampled - center)
    p, floor = ((1 + (dev >= d).sum()) / (1 + n_resamples) for d in deviations)  # valid p-values
    return float(p), float(floor), f"monte carlo ({n_resamples} permutations, seed {seed})"


def prob_improvement_interval(estimate, n_a: int, n_b: int, level: float = 0.95):
    """Confidence interval of P(A > B) given its estimate U / (n_a n_b); vectorized over estimate.

    Newcombe's (2006) method 5: the score interval {theta : |estimate - theta| <= q sqrt(V(theta))}
    with the Hanley-McNeil variance V(theta) = theta (1 - theta) / (n_a n_b) * [1 + (N* - 1)
    ((1 - theta) / (2 - theta) + theta / (1 + theta))], N* = (n_a + n_b) / 2. As a score interval
    it stays inside [0, 1] and keeps its width at complete separation (estimate 0 or 1), where
    Wald, DeLong and Brunner-Munzel intervals collapse to a point. Newcombe uses the normal
    quantile; here q is Student's t with n_a + n_b - 2 degrees of freedom, because with the normal
    quantile 3 vs 3 seeds covered only 90 % and the interval excluded 0.5 where the exact
    Mann-Whitney test cannot reject (p = 0.1). With t, simulated coverage (normal samples, true P
    0.5-0.99, 20k simulations each) is 95.7-100 % at 2-10 seeds per group - conservative - and
    without ties the interval never excludes 0.5 unless the exact test has p < 0.05 (checked for
    all sizes 2-10). A stratified percentile bootstrap (rliable's) covers 8-82 % at 3 vs 3.
    """
    from scipy import stats

    estimate = np.asarray(estimate, dtype=float)
    q = stats.t.ppf(0.5 + level / 2, max(n_a + n_b - 2, 1))
    n_star = (n_a + n_b) / 2

    def excess(theta, sign):  # estimate - theta + sign * q * sd(theta): one root on each side
        var = (
            theta
            * (1 - theta)
            / (n_a * n_b)
            * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))
        )
        return estimate - theta + sign * q * np.sqrt(var)

    bounds = []
    for sign, below, above in (
        (-1.0, np.zeros_like(estimate), estimate.copy()),
        (1.0, estimate.copy(), np.ones_like(estimate)),
    ):
        for _ in range(60):  # bisection: excess > 0 below the root, < 0 above it
            mid = (below + above) / 2
            positive = excess(mid, sign) > 0
            below, above = np.where(positive, mid, below), np.where(positive, above, mid)
        bounds.append((below + above) / 2)
    return bounds[0], bounds[1]


def _u_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Mann-Whitney U of a: pairs with a above b, ties counting one half."""
    return float((a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum())


def prob_improvement(a, b, level: float = 0.95) -> dict:
    """P(a > b) + 0.5 P(a = b) over all pairs of seeds, with ``prob_improvement_interval``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return {
            "prob_improvement": float("nan"),
            "prob_improvement_low": float("nan"),
            "prob_improvement_high": float("nan"),
        }
    estimate = _u_statistic(a, b) / (len(a) * len(b))
    low, high = prob_improvement_interval(estimate, len(a), len(b), level)
    return {
        "prob_improvement": float(estimate),
        "prob_improvement_low": float(low),
        "prob_improvement_high": float(high),
    }


def mann_whitney(
    a, b, max_exact_work: int = MAX_EXACT_WORK, n_resamples: int = MONTE_CARLO_RESAMPLES, seed: int = 0
) -> dict:
    """Two-sided Mann-Whitney U test of a vs b with Cliff's delta and P(a > b) as effect sizes.

    p = P(|U - E U| >= |u - E U|) under the permutation distribution of the pooled values (ties
    kept as midranks), exact unless the sample is too large (then ``p_method`` says Monte Carlo).
    ``smallest_p`` is the p of the most extreme split these sizes and ties allow; the note is set
    when it exceeds ALPHA. Cliff's delta = P(a > b) - P(a < b), from -1 (every a below every b)
    to 1 (every a above).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"mann_whitney needs two non-empty groups, got {len(a)} and {len(b)} values")
    first, second = (a, b) if len(a) <= len(b) else (b, a)  # cheaper over the smaller group; same p
    ranks2 = np.rint(2 * stats.rankdata(np.concatenate([first, second]))).astype(np.int64)
    p, floor, method = _rank_sum_test(ranks2, len(first), max_exact_work, n_resamples, seed)
    effect = prob_improvement(a, b)
    reason = "N too small" if smallest_p(len(a), len(b)) > ALPHA else "too many ties"
    return {
        "U": _u_statistic(a, b),
        "p": min(1.0, p),
        "p_method": method,
        "cliffs_delta": 2 * effect["prob_improvement"] - 1,
        **effect,
        "smallest_p": min(1.0, floor),
        "note": "" if floor <= ALPHA else f"{reason}: p cannot go below {min(1.0, floor):.3g}",
    }


def pairwise(final: pd.DataFrame, value: str = "test_acc_pct", group: str = "model") -> pd.DataFrame:
    """Mann-Whitney tests and P(a > b) between every pair of groups within each dataset."""
    rows = []
    for dataset, d in final.groupby("dataset", sort=True):
        groups = {name: g[value].to_numpy() for name, g in d.groupby(group, sort=True)}
        for first, second in itertools.combinations(groups, 2):
            a, b = groups[first], groups[second]
            rows.append(
                {
                    "dataset": dataset,
                    "a": first,
                    "b": second,
                    "n_a": len(a),
                    "n_b": len(b),
                    "median_a": float(np.median(a)),
                    "median_b": float(np.median(b)),
                    **mann_whitney(a, b),
                }
            )
    return pd.DataFrame(rows)
