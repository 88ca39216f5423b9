"""The page's first section, "The study's question": final accuracy, gap and time to fit against each
axis the study varies (its table is ``tables.axis_table``, shown beside the figure)."""

from __future__ import annotations

import numpy as np

from .inputs import ReportInputs
from .registry import section_figure
from .tables import axis_table, is_geometric, null_named

question_figure = section_figure("question")


def _axis_positions(values: list) -> tuple[dict, bool]:
    """Where each value of an axis goes on the x axis: itself (numbers; ``log`` when geometric) or
    its rank (strings, lists)."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        return {v: float(v) for v in values}, is_geometric(values)
    return {v: i for i, v in enumerate(values)}, False


@question_figure("against_axis", when=lambda inputs: bool(inputs.varying_axes))
def against_axis(inputs: ReportInputs):
    """The study's question against each axis: final test accuracy (solid, 95 % t-interval of the
    mean; points: seeds) and training accuracy (dashed), the generalization gap, and the epochs
    needed to fit 99 % of the training labels (hollow: seeds that never fitted within the epoch
    budget), one line per model; one row per dataset and value of the other axes. Dotted: chance."""
    # One figure per varying axis (a log x axis where the values are geometric, e.g. learning rates).
    import matplotlib.pyplot as plt

    runs, figures = null_named(inputs.runs, inputs.varying_axes), {}
    for axis in inputs.varying_axes:
        others = [a for a in inputs.varying_axes if a != axis]
        table = axis_table(runs, axis, others, inputs.n_test)
        rows = table[["dataset", *others]].drop_duplicates().values.tolist()
        values = sorted(runs[axis].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
        where, log = _axis_positions(values)
        fig, axes = plt.subplots(
            len(rows), 3, figsize=(13.5, 3.7 * len(rows)), squeeze=False, layout="constrained"
        )
        colors = dict(zip(dict.fromkeys(table["model"]), plt.get_cmap("tab10").colors, strict=False))
        for (ax_acc, ax_gap, ax_fit), row in zip(axes, rows, strict=True):
            here = dict(zip(["dataset", *others], row, strict=True))
            mask = np.logical_and.reduce([table[k] == v for k, v in here.items()])
            in_row = np.logical_and.reduce(
                [runs["source_dataset" if k == "dataset" else k] == v for k, v in here.items()]
            )
            for model, t in table[mask].groupby("model", sort=False):
                c, x = colors[model], t[axis].map(where)
                ax_acc.plot(x, t.test_acc_mean, "o-", color=c, label=f"{model}: test")
                ax_acc.fill_between(
                    x, t.test_acc_ci_low, t.test_acc_ci_high, color=c, alpha=0.15, linewidth=0
                )
                ax_acc.plot(x, t.train_acc_mean, "s--", color=c, alpha=0.7, label=f"{model}: train")
                ax_gap.plot(x, t.gap_mean, "o-", color=c, label=model)
                r = runs[in_row & (runs.model == model)]
                ax_acc.scatter(r[axis].map(where), 100 * r.final_test_acc, color=c, s=10, alpha=0.5)
                # Seeds that never fit the training set are drawn one epoch past the budget, hollow.
                never = r.epochs.max() + 1
                fit, never_fit = r.fit_epoch.fillna(never), r.fit_epoch.isna()
                ax_fit.plot(x, t.fit_epoch_median, "o-", color=c, label=model)
                rx = r[axis].map(where)
                ax_fit.scatter(rx[~never_fit], fit[~never_fit], s=18, color=c, alpha=0.7)
                ax_fit.scatter(
                    rx[never_fit], fit[never_fit], s=18, facecolors="none", edgecolors=[c], alpha=0.7
                )
                ax_fit.axhline(never, color="#999", linestyle=":", linewidth=0.8)
            chance = 100 / inputs.n_classes.get(runs.loc[in_row, "dataset"].iloc[0], 10)
            ax_acc.axhline(chance, color="#999", linestyle=":", linewidth=0.8)
            where_text = " ".join(f"{k}={v}" for k, v in here.items() if k != "dataset")
            name = f"{here['dataset']}" + (f" ({where_text})" if where_text else "")
            ax_acc.set(title=f"{name}: final accuracy", ylabel="accuracy (%)")
            ax_gap.set(title=f"{name}: train − test accuracy", ylabel="gap (points)")
            ax_fit.set(title=f"{name}: time to fit (99 %)", ylabel="epochs (dotted: never fitted)")
            for ax in (ax_acc, ax_gap, ax_fit):
                ax.set_xlabel(f"{axis} ({inputs.axes.get(axis, axis)})")
                if log:
                    ax.set_xscale("log")
                elif not isinstance(next(iter(where.values())), float):
                    ax.set_xticks(list(where.values()), [str(v) for v in where], rotation=20)
                ax.grid(alpha=0.3)
            ax_acc.legend(fontsize=7, ncol=2)
        figures[axis] = fig
    return figures
