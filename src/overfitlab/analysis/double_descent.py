"""The report's double-descent figures and table: test error against capacity (``model.width``),
training time and training size (Belkin et al. 2019; Nakkiran et al. 2019/2021).

Drawn when the study has a ``model.width`` axis with three or more values; the label-noise
(``train.label_noise``) and training-size (``prepare.train_size``) axes, when present, give the
lines and panels. Training error here is the final net's, in eval mode, on the labels it was trained
on (collect's per-example ``final_correct``), so "fits the training set" means exactly that.

* interpolation threshold: the smallest width whose mean training error is at most
  ``INTERPOLATED`` (1 %);
* ``params = n·K``: the width at which the parameter count equals training examples x classes,
  where Belkin et al. place the threshold (interpolated on a log scale from the runs' ``n_params``);
* peak: the width of the highest mean test error after the first local minimum of test error
  (the classical U's bottom); ``NaN`` when test error only falls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .inputs import ReportInputs
from .panels import panels_by
from .registry import section_figure
from .stats import accuracy_ci

INTERPOLATED = 0.01  # training error at most 1 %: the training set is fitted
WIDTH, NOISE, SIZE = "model.width", "train.label_noise", "prepare.train_size"
NOISE_COLOURS = ["#1f4e79", "#c62828", "#2ca02c", "#9467bd"]


def axis_column(inputs: ReportInputs, key: str) -> str | None:
    """The runs.csv column of the study axis ``key`` (None when the study has no such axis)."""
    return next((column for column, k in inputs.axes.items() if k == key), None)


def applies(inputs: ReportInputs) -> bool:
    width = axis_column(inputs, WIDTH)
    return width is not None and inputs.runs[width].nunique() >= 3 and not inputs.examples.empty


double_descent_figure = section_figure("double_descent", when=applies)


def run_errors(inputs: ReportInputs) -> pd.DataFrame:
    """One row per run: its width, noise and training size (0 / the prepared size when not an axis),
    test error, training error (eval mode, all labels and the changed ones), parameters, fit epoch."""
    runs = inputs.runs
    keys = ["dataset", "model", "seed"]
    examples = inputs.examples
    train = examples.groupby(keys)["final_correct"].mean().rsub(1).rename("train_error")
    changed = (
        examples[examples["changed"]]
        .groupby(keys)["final_correct"]
        .mean()
        .rsub(1)
        .rename("changed_train_error")
    )
    table = runs.merge(train.reset_index(), on=keys, how="left").merge(
        changed.reset_index(), on=keys, how="left"
    )
    columns = {key: axis_column(inputs, key) for key in (WIDTH, NOISE, SIZE)}
    n_train = inputs.counts[inputs.counts["split"] == "train"].groupby("dataset")["count"].sum()
    return pd.DataFrame(
        {
            "variant": table["dataset"],
            "model": table["model"],
            "seed": table["seed"],
            "width": table[columns[WIDTH]].astype(int),
            "noise": table[columns[NOISE]].astype(float) if columns[NOISE] else 0.0,
            "train_size": table[columns[SIZE]].astype(int)
            if columns[SIZE]
            else table["dataset"].map(n_train).astype(int),
            "n_params": table["n_params"].astype(int),
            "test_error": 1 - table["final_test_acc"],
            "train_error": table["train_error"],
            "changed_train_error": table["changed_train_error"],
            "fit_epoch": table["fit_epoch"],
            "epochs": table["epochs"],
            "n_classes": table["dataset"].map(inputs.n_classes),
            "n_test": table["dataset"].map(inputs.n_test),
        }
    )


def width_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (model, training size, noise, width): mean test error with its 95 % interval (the seeds'
    t-interval, widened to the pooled binomial one where that is wider: ``stats.accuracy_ci``), mean
    training error, and the parameter count."""
    rows = []
    for (model, size, noise, width), g in errors.groupby(
        ["model", "train_size", "noise", "width"], sort=True
    ):
        low, high = accuracy_ci(1 - g["test_error"], int(g["n_test"].iloc[0]))
        rows.append(
            {
                "model": model,
                "train_size": size,
                "noise": noise,
                "width": width,
                "seeds": len(g),
                "n_params": int(g["n_params"].iloc[0]),
                "test_error": g["test_error"].mean(),
                "test_error_low": 1 - high,
                "test_error_high": 1 - low,
                "train_error": g["train_error"].mean(),
                "changed_train_error": g["changed_train_error"].mean(),
                "fit_epoch_median": g["fit_epoch"].median(),
                "epochs": int(g["epochs"].max()),
                "n_classes": int(g["n_classes"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def interpolation_width(curve: pd.DataFrame) -> float:
    """The smallest width whose mean training error is at most ``INTERPOLATED`` (NaN: none)."""
    fitted = curve[curve["train_error"] <= INTERPOLATED + 1e-9]  # 1 - 0.99 is 0.010000000000000009
    return float(fitted["width"].min()) if len(fitted) else float("nan")


def params_width(curve: pd.DataFrame, n_train: int) -> float:
    """The width whose parameter count is n·K (log-linear interpolation between the runs' widths)."""
    target = n_train * int(curve["n_classes"].iloc[0])
    widths, params = curve["width"].to_numpy(float), curve["n_params"].to_numpy(float)
    if not params.min() <= target <= params.max():
        return float("nan")
    return float(np.exp(np.interp(np.log(target), np.log(params), np.log(widths))))


def peak(curve: pd.DataFrame) -> dict:
    """The test-error peak after the first local minimum (see the module docstring)."""
    error = curve["test_error"].to_numpy()
    bottom = next((i for i in range(len(error) - 1) if error[i] <= error[i + 1]), len(error) - 1)
    top = bottom + int(np.argmax(error[bottom:]))
    if top == bottom:
        return {"peak_width": float("nan"), "peak_test_error": float("nan"), "rise": float("nan")}
    after = error[top:].min()
    return {
        "peak_width": float(curve["width"].iloc[top]),
        "peak_test_error": float(error[top]),
        "peak_low": float(curve["test_error_low"].iloc[top]),
        "peak_high": float(curve["test_error_high"].iloc[top]),
        "bottom_width": float(curve["width"].iloc[bottom]),
        "bottom_test_error": float(error[bottom]),
        "rise": float(error[top] - error[bottom]),
        "fall_after_peak": float(error[top] - after),
        "widest_test_error": float(error[-1]),
    }


def summary(inputs: ReportInputs) -> pd.DataFrame:
    """Per (model, training size, noise): interpolation threshold, the n·K width and the peak."""
    table = width_table(run_errors(inputs))
    rows = []
    for (model, size, noise), curve in table.groupby(["model", "train_size", "noise"], sort=True):
        curve = curve.sort_values("width")
        rows.append(
            {
                "model": model,
                "train_size": size,
                "noise": noise,
                "interpolation_width": interpolation_width(curve),
                "params_nK_width": params_width(curve, size),
                **peak(curve),
            }
        )
    return pd.DataFrame(rows)


def _error_panels(inputs: ReportInputs, by: list[str], lines: str, title: str):
    """The model-wise and sample-wise figures' frame: one panel per value of ``by`` in the width table,
    each with its rows' curves (``_curves``: one per value of ``lines``)."""
    fig, panels = panels_by(width_table(run_errors(inputs)), by, (4.6, 3.4), title)
    return fig, [(ax, value, here, _curves(here, lines)) for ax, value, here in panels]


def _curves(rows: pd.DataFrame, by: str) -> list[tuple]:
    """One curve per value of ``by``: (the value, its rows sorted by width, its colour)."""
    groups = zip(rows.groupby(by), NOISE_COLOURS, strict=False)
    return [(value, curve.sort_values("width"), colour) for (value, curve), colour in groups]


def _against_width(ax, here: pd.DataFrame, ylabel: str, title: str, log_y: bool = False) -> None:
    """A panel against width: a log2 axis ticked at the runs' widths, the labels and the legend
    (``log_y``: a log y axis, with its minor ticks)."""
    widths = sorted(here.width.unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths], fontsize=7)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel="width k", ylabel=ylabel, title=title)
    ax.legend(fontsize=7)


def _test_error_band(ax, curve: pd.DataFrame, colour: str, label: str) -> None:
    """Mean test error against width with its 95 % interval as a band (percent)."""
    ax.plot(curve.width, 100 * curve.test_error, "o-", color=colour, ms=3, label=label)
    ax.fill_between(
        curve.width, 100 * curve.test_error_low, 100 * curve.test_error_high, color=colour, alpha=0.15
    )


def _mark(ax, x: float, colour: str, style: str) -> None:
    if np.isfinite(x):
        ax.axvline(x, color=colour, linestyle=style, linewidth=1)


@double_descent_figure("double_descent")
def double_descent(inputs: ReportInputs):
    """Model-wise double descent: final test error (solid, 95 % interval) and training error
    (dashed; the final net in eval mode on the labels it trained on) against width k, one line
    per label-noise level, one panel per training size. Dotted: the interpolation threshold
    (first width whose training error is at most 1 %), one per noise level; grey dash-dot:
    parameters = n·K. Belkin et al. 2019 ('Reconciling modern machine-learning practice and the
    classical bias–variance trade-off'); Nakkiran et al. 2019 ('Deep double descent'): test error
    peaks near the threshold, higher with label noise."""
    title = "Test and training error against width"
    fig, panels = _error_panels(inputs, ["model", "train_size"], "noise", title)
    for ax, (model, size), here, curves in panels:
        for noise, curve, colour in curves:
            _test_error_band(ax, curve, colour, f"test, noise {noise:g}")
            ax.plot(curve.width, 100 * curve.train_error, "--", color=colour, label=f"train, noise {noise:g}")
            _mark(ax, interpolation_width(curve), colour, ":")
        _mark(ax, params_width(here[here.noise == here.noise.min()].sort_values("width"), size), "#777", "-.")
        _against_width(ax, here, "error (%)", f"{model}, n = {size}")
    return fig


@double_descent_figure(
    "double_descent_sample_wise",
    when=lambda inputs: applies(inputs) and axis_column(inputs, SIZE) is not None,
)
def double_descent_sample_wise(inputs: ReportInputs):
    """Sample-wise: final test error against width for each training size n (95 % interval), one
    panel per label-noise level; dash-dot lines: parameters = n·K for each n. Nakkiran et al.
    2019: the peak moves to larger models with more data, and near it more data can hurt."""
    title = "Test error against width per training size"
    fig, panels = _error_panels(inputs, ["model", "noise"], "train_size", title)
    for ax, (model, noise), here, curves in panels:
        for size, curve, colour in curves:
            _test_error_band(ax, curve, colour, f"n = {size}")
            _mark(ax, params_width(curve, size), colour, "-.")
        _against_width(ax, here, "test error (%)", f"{model}, label noise {noise:g}")
    return fig


@double_descent_figure("double_descent_epochs")
def double_descent_epochs(inputs: ReportInputs):
    """Epoch-wise: mean test error over seeds (colour) for each width (x) and epoch (y, log scale),
    one panel per label-noise level and training size. Nakkiran et al. 2019: with label noise,
    test error of wide enough nets can rise and fall again with training time."""
    errors = run_errors(inputs)
    epochs = inputs.epochs[["dataset", "model", "seed", "epoch", "test_acc"]].merge(
        errors[["variant", "model", "seed", "width", "noise", "train_size"]].rename(
            columns={"variant": "dataset"}
        ),
        on=["dataset", "model", "seed"],
    )
    epochs = epochs.assign(test_error=100 * (1 - epochs["test_acc"]))
    title = "Test error (%) by width and epoch"
    fig, panels = panels_by(epochs, ["model", "noise", "train_size"], (3.6, 3.2), title, sort=True)
    low, high = np.nanpercentile(epochs["test_error"], [1, 99])
    for ax, (model, noise, size), here in panels:
        grid = here.pivot_table(index="epoch", columns="width", values="test_error", aggfunc="mean")
        widths = list(grid.columns)
        mesh = ax.pcolormesh(
            np.arange(len(widths) + 1) - 0.5,
            np.concatenate([[0.5], grid.index.to_numpy() + 0.5]),
            grid.to_numpy(),
            cmap="viridis",
            vmin=low,
            vmax=high,
            shading="flat",
        )
        ax.set_yscale("log")
        ax.set_xticks(range(len(widths)), [str(w) for w in widths], fontsize=6, rotation=90)
        ax.set(xlabel="width k", ylabel="epoch", title=f"{model}, noise {noise:g}, n = {size}")
    fig.colorbar(mesh, ax=[ax for ax, _, _ in panels], shrink=0.8, label="test error (%)")
    return fig


@double_descent_figure("double_descent_time_to_fit")
def double_descent_time_to_fit(inputs: ReportInputs):
    """Time to fit against width: the median epoch at which the running training accuracy first
    reaches 99 % (over the seeds that did; a missing point: no seed did within the epoch budget),
    one line per label-noise level and training size. Near the interpolation threshold fitting
    takes longest."""
    table = width_table(run_errors(inputs))
    title = "Epochs to fit the training set against width"
    fig, panels = panels_by(table, "model", (4.6, 3.4), title)
    for ax, model, here in panels:
        noises = sorted(here.noise.unique())
        for (noise, size), curve in here.groupby(["noise", "train_size"]):
            colour = NOISE_COLOURS[noises.index(noise) % len(NOISE_COLOURS)]
            curve = curve.sort_values("width")
            style = "o-" if size == here.train_size.max() else "s--"
            ax.plot(
                curve.width,
                curve.fit_epoch_median,
                style,
                color=colour,
                ms=3,
                label=f"noise {noise:g}, n = {size}",
            )
        ax.axhline(here.epochs.max(), color="#999", linestyle=":", linewidth=0.8)
        _against_width(ax, here, "epochs to 99 % (dotted: budget)", model, log_y=True)
    return fig
