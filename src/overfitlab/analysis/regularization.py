"""The report's regularization table and figure: what each lever against overfitting buys (Zhang et
al. 2017, Table 1), with true and with random labels.

Drawn when the study has a regularizer axis (``LEVERS``) with two or more values. A run's regimen
names the levers that are on (``none``, ``weight decay``, ``augment``, ``weight decay + augment``,
``dropout``, ...). Per (model, labels, regimen): final training and test accuracy and the gap with
95 % t-intervals over the seeds, the epochs to fit the training set (running accuracy >= 99 %:
collect's ``fit_epoch``) and, against ``none`` of the same model and labels, the test-accuracy
difference with its exact two-sided Mann-Whitney p (``stats.mann_whitney``: with 3 seeds a side
it cannot go below 0.1, and the table says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .inputs import ReportInputs
from .panels import panel_grid
from .registry import figure
from .stats import mann_whitney, mean_ci

# study axis -> (its name in a regimen, the value that means "off")
LEVERS = {
    "train.weight_decay": ("weight decay", (0, 0.0, None)),
    "train.augment": ("augment", ("none", None)),
    "model.dropout": ("dropout", (0, 0.0, None)),
    "train.label_smoothing": ("label smoothing", (0, 0.0, None)),
}
NOISE = "train.label_noise"
NONE = "none"


def lever_columns(axes: dict[str, str]) -> dict[str, str]:
    """runs.csv column -> the lever's name, for the study's regularizer axes (``axes``: axes.json)."""
    return {column: LEVERS[key][0] for column, key in axes.items() if key in LEVERS}


def applies(inputs: ReportInputs) -> bool:
    return any(inputs.runs[c].nunique(dropna=False) >= 2 for c in lever_columns(inputs.axes))


def regimen(row: pd.Series, levers: dict[str, str], axes: dict[str, str]) -> str:
    """The levers on in a run, joined by " + " (``none`` when none is)."""
    on = [name for column, name in levers.items() if not _off(row[column], LEVERS[axes[column]][1])]
    return " + ".join(on) or NONE


def _off(value, off_values) -> bool:
    return (
        (isinstance(value, float) and np.isnan(value))
        or value in off_values
        or str(value) in map(str, off_values)
    )


def labels_of(noise) -> str:
    return "true labels" if not noise else ("random labels" if noise == 1 else f"label noise {noise:g}")


def regularization_table(runs: pd.DataFrame, axes: dict[str, str]) -> pd.DataFrame:
    """One row per (dataset, model, labels, regimen) of collect's ``runs.csv`` and ``axes.json``;
    percentages (see the module docstring)."""
    levers = lever_columns(axes)
    noise = next((c for c, k in axes.items() if k == NOISE), None)
    runs = runs[
        runs.get("status", pd.Series("complete", index=runs.index)).fillna("complete") == "complete"
    ].copy()
    runs["regimen"] = [regimen(r, levers, axes) for _, r in runs.iterrows()]
    runs["labels"] = runs[noise].map(labels_of) if noise else labels_of(0)
    rows = []
    keys = ["source_dataset", "model", "labels"]
    for (dataset, model, labels), group in runs.groupby(keys, sort=True):
        baseline = group[group["regimen"] == NONE]["final_test_acc"].to_numpy() * 100
        for name, g in group.groupby("regimen", sort=False):
            row = {"dataset": dataset, "model": model, "labels": labels, "regimen": name, "seeds": len(g)}
            for metric in ("train", "test", "gap"):
                values = 100 * g[f"final_{metric}_acc"].to_numpy()
                low, high = mean_ci(values, bounds=(0, 100))
                row |= {f"{metric}_mean": values.mean(), f"{metric}_ci_low": low, f"{metric}_ci_high": high}
            row["fit_epoch_median"] = g["fit_epoch"].median()
            row["seeds_fitted"] = int(g["fit_epoch"].notna().sum())
            row["epochs"] = int(g["epochs"].max())
            test = 100 * g["final_test_acc"].to_numpy()
            if name != NONE and len(baseline):
                tested = mann_whitney(test, baseline)
                row |= {"test_vs_none": test.mean() - baseline.mean(), "p_vs_none": tested["p"]}
                row["note"] = tested["note"]
            rows.append(row)
    table = pd.DataFrame(rows)
    regimens = {name: i for i, name in enumerate(dict.fromkeys([NONE, *sorted(table["regimen"], key=len)]))}
    rank = {"regimen": regimens, "labels": {"true labels": 0}}  # true labels first, then by noise

    def order(column: pd.Series) -> pd.Series:
        return column.map(lambda v: (rank[column.name].get(v, 1), v)) if column.name in rank else column

    return table.sort_values(["dataset", "model", "labels", "regimen"], key=order).reset_index(drop=True)


@figure("regularization", when=applies)
def regularization_figure(inputs: ReportInputs):
    """What each regularizer buys: final training (triangles) and test accuracy (circles) per
    regimen, mean over the seeds with its 95 % t-interval, one panel per model and labels (Zhang
    et al. 2017, Table 1). With random labels, test accuracy at chance and training accuracy near
    100 % is memorization; the table beside it gives the epochs to fit and the test against no
    regularizer."""
    table = regularization_table(inputs.runs, inputs.axes)
    panels = list(table.groupby(["model", "labels"], sort=False))
    regimens = list(dict.fromkeys(table["regimen"]))
    fig, axes = panel_grid(len(panels), (max(4.0, 0.9 * len(regimens) + 1.5), 3.6), "Regularizers")
    for ax, ((model, labels), t) in zip(axes, panels, strict=True):
        x = np.array([regimens.index(r) for r in t["regimen"]])
        for metric, marker, colour, shift in (
            ("train", "^", "#555555", -0.12),
            ("test", "o", "#1f77b4", 0.12),
        ):
            mean = t[f"{metric}_mean"].to_numpy()
            errors = [mean - t[f"{metric}_ci_low"].to_numpy(), t[f"{metric}_ci_high"].to_numpy() - mean]
            ax.errorbar(x + shift, mean, yerr=errors, fmt=marker, color=colour, capsize=3, label=metric)
        ax.set_xticks(range(len(regimens)), [r.replace(" + ", "\n+ ") for r in regimens], fontsize=7)
        ax.set_title(f"{model}, {labels}", fontsize=9)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 102)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    return fig
