"""The page's section "Comparing the architectures": the final test accuracy of every seed per model,
with the pairwise tests (regularization.py adds its figure to this section when a study has one)."""

from __future__ import annotations

import pandas as pd

from .inputs import ReportInputs
from .panels import panel_grid
from .registry import section_figure
from .stats import pairwise
from .tables import final_accuracy

comparison_figure = section_figure("comparison")


def _mark_tests(ax, data: pd.DataFrame, tests: pd.DataFrame) -> None:
    positions = {label.get_text(): i for i, label in enumerate(ax.get_xticklabels())}
    top, span = data["test_acc_pct"].max(), max(data["test_acc_pct"].max() - data["test_acc_pct"].min(), 1.0)
    for k, t in enumerate(tests.itertuples()):
        x1, x2 = sorted((positions[t.a], positions[t.b]))
        y = top + span * (0.08 + 0.12 * k)
        ax.plot([x1, x1, x2, x2], [y - span * 0.02, y, y, y - span * 0.02], color="#555", linewidth=0.8)
        label = f"p={t.p:.2g}" + ("*" if t.note else "")
        ax.text((x1 + x2) / 2, y, label, ha="center", va="bottom", fontsize=8)
    ax.set_ylim(top=top + span * (0.15 + 0.12 * len(tests)))


@comparison_figure("final_test_accuracy")
def box_plot(inputs: ReportInputs):
    """Final test accuracy of every seed (points), with its box plot per architecture, one panel per
    dataset (variant); brackets: two-sided Mann-Whitney p-values (* = these seeds cannot reach
    p < 0.05: too few of them, or too many ties)."""
    import seaborn as sns

    final = final_accuracy(inputs.runs)
    tests = pairwise(final)
    datasets = list(dict.fromkeys(final["dataset"]))
    panel = (max(3.2, 1.6 + 1.0 * final["model"].nunique()), 3.8)
    fig, axes = panel_grid(len(datasets), panel, "Final test accuracy per seed")
    for ax, dataset in zip(axes, datasets, strict=True):
        data = final[final["dataset"] == dataset]
        sns.boxplot(
            data=data, x="model", y="test_acc_pct", ax=ax, color="#cfe0f3", showfliers=False, width=0.55
        )
        sns.stripplot(
            data=data, x="model", y="test_acc_pct", ax=ax, color="#1f4e79", size=5, jitter=0.18, alpha=0.85
        )
        ax.set_title(dataset, fontsize=9)
        ax.set(xlabel="", ylabel="test accuracy (%)")
        ax.tick_params(axis="x", rotation=20, labelsize=8)
        if not tests.empty:
            _mark_tests(ax, data, tests[tests["dataset"] == dataset])
    return fig
