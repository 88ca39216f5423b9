"""A study's committed results, read as a clone has them, and the statistics they allow.

What a clone has per study is ``reports/metrics/summary.json`` (mean, sd and count over seeds per
dataset variant and model; the per-example summary under ``examples``), its ``params.yaml`` and, for
some studies, ``runs.csv`` / ``axes.json``. Per-seed values are not in a summary, so an interval
here is the seeds' t-interval from the sd (the report widens it to the pooled binomial one where
that is wider: ``stats.accuracy_ci``), and a comparison of two means is Welch's t-test from the
means, sds and counts (the report's exact Mann-Whitney test needs the seeds' values).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from ..errors import ConfigError

METRICS = Path("reports/metrics")
# Class counts of the datasets the studies use (summary.json does not carry them): for n·K and chance.
CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10}


def read(root: Path, path: Path | str) -> pd.DataFrame | dict:
    file = root / path
    if not file.exists():
        raise ConfigError(f"{file} is missing: run its study (scripts/study.sh) and commit its results")
    if file.suffix == ".json":
        return json.loads(file.read_text())
    if file.suffix == ".yaml":
        return yaml.safe_load(file.read_text())
    return pd.read_csv(file)


def summary_path(study: str) -> Path:
    return Path(study) / METRICS / "summary.json"


def summary(root: Path, study: str) -> dict:
    return read(root, summary_path(study))


def parse_variant(name: str) -> tuple[str, dict]:
    """``fashion_mnist+width=12+label_noise=0.2`` -> ("fashion_mnist", {"width": 12, "label_noise": 0.2})."""
    dataset, *parts = name.split("+")
    return dataset, {key: yaml.safe_load(value) for key, value in (p.split("=", 1) for p in parts)}


def entries(summary_: dict) -> pd.DataFrame:
    """One row per (dataset variant, model) of a summary.json: the variant's axis values as columns,
    then the summary's own numbers (``test_acc_mean``, ``test_acc_sd``, ``n_seeds``, ...)."""
    rows = []
    for variant, models in summary_.items():
        if variant == "examples":
            continue
        dataset, values = parse_variant(variant)
        for model, numbers in models.items():
            rows.append({"variant": variant, "dataset": dataset, **values, "model": model, **numbers})
    return pd.DataFrame(rows)


def examples(summary_: dict) -> pd.DataFrame:
    """One row per (dataset variant, model, part: all / kept_labels / changed_labels) of the
    summary's per-example record (pooled over seeds and examples)."""
    rows = []
    for variant, models in summary_.get("examples", {}).items():
        dataset, values = parse_variant(variant)
        for model, parts in models.items():
            for part, numbers in parts.items():
                rows.append(
                    {
                        "variant": variant,
                        "dataset": dataset,
                        **values,
                        "model": model,
                        "part": part,
                        **numbers,
                    }
                )
    return pd.DataFrame(rows)


def t_interval(mean: float, sd: float | None, n: int) -> tuple[float, float]:
    """The 95 % t-interval of a mean over ``n`` seeds from their sd, cut to [0, 1] (NaN: one seed)."""
    from scipy import stats

    if n < 2 or sd is None or pd.isna(sd):
        return math.nan, math.nan
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return max(mean - half, 0.0), min(mean + half, 1.0)


def welch_p(a: pd.Series, b: pd.Series, metric: str = "test_acc") -> float:
    """Two-sided Welch t-test of two summary entries' means of ``metric`` (NaN without spread)."""
    from scipy import stats

    sds = (a[f"{metric}_sd"], b[f"{metric}_sd"])
    if any(sd is None or pd.isna(sd) for sd in sds) or sds == (0, 0):
        return math.nan
    return float(
        stats.ttest_ind_from_stats(
            a[f"{metric}_mean"],
            sds[0],
            a["n_seeds"],
            b[f"{metric}_mean"],
            sds[1],
            b["n_seeds"],
            equal_var=False,
        ).pvalue
    )


def count(n: int) -> str:
    """``10 040 714``: thousands apart by a space, as the docs write them."""
    return f"{int(n):,}".replace(",", " ")


def pct(fraction: float, digits: int = 1) -> str:
    return f"{100 * fraction:.{digits}f}"


def points(value: float) -> str:
    """A difference in points, signed; no "-0.0"."""
    return f"{value:+.1f}" if round(value, 1) != 0 else "±0.0"


def p_value(p: float) -> str:
    return "no test (a single seed, or no spread)" if math.isnan(p) else f"Welch p = {p:.2g}"


def mean_sd(entry: pd.Series, metric: str = "test_acc", digits: int = 1) -> str:
    """``88.2 ± 0.1`` (percent), or the mean alone for one seed."""
    sd = entry.get(f"{metric}_sd")
    spread = "" if sd is None or pd.isna(sd) else f" ± {pct(sd, digits)}"
    return f"{pct(entry[f'{metric}_mean'], digits)}{spread}"


def with_interval(entry: pd.Series, metric: str = "test_acc", digits: int = 1) -> str:
    """``88.2 ± 0.1 [87.9, 88.5]`` (percent): mean ± sd and the 95 % t-interval, or the mean alone."""
    low, high = t_interval(entry[f"{metric}_mean"], entry.get(f"{metric}_sd"), int(entry["n_seeds"]))
    text = mean_sd(entry, metric, digits)
    return text if math.isnan(low) else f"{text} [{pct(low, digits)}, {pct(high, digits)}]"


def settings(root: Path, study: str) -> str:
    """What a study trains, from its committed params.yaml, in one line."""
    params = read(root, Path(study) / "params.yaml")
    s, prep, train = params["study"], params["prepare"], params["train"]

    def size(key: str) -> str:
        return "all" if prep.get(key) is None else count(prep[key])

    given = (s.get("axes") or {}).items()
    values = {k: ", ".join("null" if x is None else str(x) for x in v) for k, v in given}
    axes = "; ".join(f"`{k}` ∈ {{{v}}}" for k, v in values.items())
    noise = (
        f", label noise mode `{train['label_noise_mode']}`"
        if "train.label_noise" in (s.get("axes") or {}) or train.get("label_noise")
        else ""
    )
    return (
        f"`{study}/params.yaml`: {', '.join(s['datasets'])} ({size('train_size')} training, "
        f"{size('val_size')} validation, {size('test_size')} test images), "
        f"{', '.join(f'`{m}`' for m in s['models'])}, {len(s['seeds'])} seeds, {train['epochs']} epochs of "
        f"{train['optimizer']} (lr {train['lr']}, batch {train['batch_size']}){noise}"
        + (f"; axes: {axes}" if axes else "")
    )


def source_line(root: Path, study: str, what: str = "") -> str:
    """The line under a generated table that names its file and the study's settings."""
    return f"From `{summary_path(study)}`{what}. Study: {settings(root, study)}."
