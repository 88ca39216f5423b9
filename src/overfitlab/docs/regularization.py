"""docs/regularization.md: Zhang et al.'s Table 1 on Fashion-MNIST, from the study's committed
``runs.csv`` and ``axes.json`` (the report's own table, ``analysis.regularization``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.regularization import NONE, regularization_table
from ..collection.summaries import FIT_THRESHOLD
from .committed import METRICS, points, read, settings

STUDY = Path("studies/regularization")
FEW_POINTS = 1.0  # (a): a regimen "improves test accuracy" by at least this many points
NOT_NECESSARY = 5.0  # (b): no regularizer stays within this many points of the best regimen


def regularization(root: Path) -> pd.DataFrame:
    runs = read(root, STUDY / METRICS / "runs.csv")
    return regularization_table(runs, read(root, STUDY / METRICS / "axes.json"))


def _pct(value: float) -> str:  # the table is in percent already
    return f"{value:.1f}"


def table_block(root: Path) -> str:
    """The report's regularization table, every row."""
    lines = [
        "| model | labels | regimen | train % [95 % CI] | test % [95 % CI] | gap (points) | "
        "epochs to fit (seeds fitted) | test vs none (points, exact p) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in regularization(root).itertuples():
        fit = (
            f"{r.fit_epoch_median:.0f} ({r.seeds_fitted}/{r.seeds})"
            if r.seeds_fitted
            else f"not in {r.epochs} (0/{r.seeds})"
        )
        versus = "" if r.regimen == NONE else f"{points(r.test_vs_none)}, p = {r.p_vs_none:.2g}"
        train = f"{_pct(r.train_mean)} [{_pct(r.train_ci_low)}, {_pct(r.train_ci_high)}]"
        test = f"{_pct(r.test_mean)} [{_pct(r.test_ci_low)}, {_pct(r.test_ci_high)}]"
        cells = [r.model, r.labels, r.regimen, train, test, f"{r.gap_mean:.1f}", fit, versus]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_block(root: Path) -> str:
    """Zhang et al.'s three claims, each per model: holds or does not hold here, and why."""
    table = regularization(root)
    lines = ["| claim (Zhang et al. 2017) | model | here | the numbers |", "|---|---|---|---|"]
    for model, t in table.groupby("model", sort=True):
        true = t[t["labels"] == "true labels"].set_index("regimen")
        others = true.drop(index=NONE)
        best = others["test_vs_none"].idxmax()
        gain = others.loc[best, "test_vs_none"]
        lines.append(
            f"| (a) explicit regularization improves test accuracy by a few points | {model} | "
            f"{'holds' if gain >= FEW_POINTS else 'does not hold'} | best regimen {best}: "
            f"{points(gain)} points over none ({_pct(true.loc[NONE, 'test_mean'])} → "
            f"{_pct(true.loc[best, 'test_mean'])} %, exact p = {others.loc[best, 'p_vs_none']:.2g} with "
            f"{int(true.loc[best, 'seeds'])} seeds a side); every regimen: "
            + ", ".join(f"{name} {points(d)}" for name, d in others["test_vs_none"].items())
            + " |"
        )
        top = true["test_mean"].max()
        lines.append(
            f"| (b) without it the nets still generalize | {model} | "
            f"{'holds' if top - true.loc[NONE, 'test_mean'] <= NOT_NECESSARY else 'does not hold'} | "
            f"no regularizer: {_pct(true.loc[NONE, 'test_mean'])} % test (train "
            f"{_pct(true.loc[NONE, 'train_mean'])} %), {top - true.loc[NONE, 'test_mean']:.1f} points under "
            f"the best regimen; chance is 10 % |"
        )
        random = t[t["labels"] == "random labels"].set_index("regimen")
        regularized = random.drop(index=NONE)
        fitted = [name for name, r in regularized.iterrows() if r["seeds_fitted"] == r["seeds"]]
        verdict = (
            "holds" if len(fitted) == len(regularized) else ("holds in part" if fitted else "does not hold")
        )
        lines.append(
            f"| (c) with it they still fit random labels | {model} | {verdict} | "
            f"without: {_fit(random.loc[NONE])}; "
            + "; ".join(f"{name}: {_fit(r)}" for name, r in regularized.iterrows())
            + " |"
        )
    files = f"`{STUDY / METRICS / 'runs.csv'}` and `axes.json`"
    return "\n".join([*lines, "", f"From {files}. Study: {settings(root, str(STUDY))}."])


def _fit(r: pd.Series) -> str:
    """A regimen on random labels: train and test accuracy, and whether (when) every seed fitted."""
    reached = (
        f"every seed fitted (≥ {FIT_THRESHOLD * 100:.0f} %) by epoch {r['fit_epoch_median']:.0f} (median)"
        if r["seeds_fitted"] == r["seeds"]
        else f"{int(r['seeds_fitted'])}/{int(r['seeds'])} seeds fitted in {int(r['epochs'])} epochs"
    )
    return f"train {_pct(r['train_mean'])} %, test {_pct(r['test_mean'])} %, {reached}"
