"""Statistics across seeds: confidence intervals of means and non-parametric pairwise tests.

Few seeds are the norm, so every comparison also states the smallest p-value its sample sizes
can produce at all: with 3 vs 3 seeds a two-sided Mann-Whitney test cannot go below p = 0.1.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

ALPHA = 0.05


def bootstrap_ci(values, level: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy); NaN with fewer than two values."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=n_resamples,
                             method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def smallest_p(n1: int, n2: int) -> float:
    """The smallest two-sided exact Mann-Whitney p-value possible with these sample sizes."""
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def mann_whitney(a, b) -> dict:
    """Two-sided Mann-Whitney U test of a vs b with Cliff's delta as effect size.

    Cliff's delta = P(a > b) - P(a < b), from -1 (every a below every b) to 1 (every a above).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    delta = 2.0 * result.statistic / (len(a) * len(b)) - 1.0
    floor = smallest_p(len(a), len(b))
    note = "" if floor <= ALPHA else f"N too small: p cannot go below {floor:.3g}"
    return {"U": float(result.statistic), "p": float(result.pvalue), "cliffs_delta": float(delta),
            "smallest_p": floor, "note": note}


def pairwise(final: pd.DataFrame, value: str = "test_acc_pct", group: str = "model") -> pd.DataFrame:
    """Mann-Whitney tests between every pair of groups within each dataset."""
    rows = []
    for dataset, d in final.groupby("dataset", sort=True):
        groups = {name: g[value].to_numpy() for name, g in d.groupby(group, sort=True)}
        for first, second in itertools.combinations(groups, 2):
            a, b = groups[first], groups[second]
            rows.append({"dataset": dataset, "a": first, "b": second, "n_a": len(a), "n_b": len(b),
                         "median_a": float(np.median(a)), "median_b": float(np.median(b)), **mann_whitney(a, b)})
    return pd.DataFrame(rows)
