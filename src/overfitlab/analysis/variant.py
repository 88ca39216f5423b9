"""The page's per-variant section, "Learning curves and predictions": for each dataset variant,
train and test accuracy and loss per epoch (mean over seeds with a 95 % band), the generalization
gap, kept vs random labels under a label control, and the median seed's confusion matrices and
predictions. Each figure is drawn once per variant (``panels.per_variant``), one panel per model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import layout
from .inputs import ReportInputs
from .panels import each_variant, gray_or_color, mosaic, panels_by, per_variant
from .registry import section_figure
from .tables import confusion, curve_bands, percent

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
GRID_IMAGES = 12  # test images shown per model in the prediction grid (a 3 x 4 mosaic)

variant_figure = section_figure("variant")


def plot_bands(bands: pd.DataFrame, metrics: dict[str, str], ylabel: str, log: bool = False, title: str = ""):
    """One panel per model (wrapped), one line with its band per metric; one figure per variant."""
    return per_variant(_band_panels, bands, metrics, ylabel, log, title)


def _band_panels(bands: pd.DataFrame, metrics: dict[str, str], ylabel: str, log: bool, title: str):
    from matplotlib.ticker import MaxNLocator

    dataset = bands["dataset"].iloc[0]
    fig, panels = panels_by(
        bands, "model", (3.4, 2.9), f"{title} ({dataset})" if title else dataset, sharey=True
    )
    colors = dict(zip(metrics, PALETTE, strict=False))
    for ax, model, rows in panels:
        for metric, label in metrics.items():
            b = rows[rows.metric == metric]
            if b.empty:
                continue
            ax.plot(b["epoch"], b["mean"], color=colors[metric], label=label, marker="o", markersize=3)
            ax.fill_between(b["epoch"], b["low"], b["high"], color=colors[metric], alpha=0.2, linewidth=0)
        ax.set_title(model, fontsize=9)
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    panels[0][0].legend(fontsize=8)
    return fig


def train_vs_test(inputs: ReportInputs, kind: str, ylabel: str, title: str):
    """Train and test ``kind`` (``acc`` in percent, ``loss`` on a log scale) per epoch, plus one line
    per extra test set (image folders)."""
    lines = {
        f"train_{kind}": "train",
        f"test_{kind}": "test",
        **{f"test_{kind}/{n}": f"test {n}" for n in inputs.extra_test_sets},
    }
    log = kind == "loss"
    bands = curve_bands(inputs.epochs, list(lines), log=log)
    return plot_bands(bands if log else percent(bands), lines, ylabel, log=log, title=title)


@variant_figure("learning_curves")
def learning_curves(inputs: ReportInputs):
    """Training accuracy (running mean over each epoch, dropout on) and test accuracy (eval mode,
    full test set) per epoch; line = mean over seeds, band = 95 % t-interval."""
    return train_vs_test(inputs, "acc", "accuracy (%)", "Train vs test accuracy: mean over seeds, 95 % band")


@variant_figure("generalization_gap")
def generalization_gap(inputs: ReportInputs):
    """Train − test accuracy per epoch: a growing gap is memorization, not learning."""
    bands = percent(curve_bands(inputs.epochs, ["gap_acc"]), clip=False)
    return plot_bands(
        bands, {"gap_acc": "train − test"}, "accuracy gap (points)", title="Generalization gap per epoch"
    )


@variant_figure("loss_curves")
def loss_curves(inputs: ReportInputs):
    """Training and test loss (log scale; line = geometric mean over seeds, band = 95 % t-interval
    of the log loss). A test loss rising while training loss falls marks overfitting."""
    return train_vs_test(inputs, "loss", "cross-entropy (log)", "Train vs test loss")


def _has_corrupted_labels(inputs: ReportInputs) -> bool:
    return "train_corrupted_acc" in inputs.epochs and inputs.epochs["train_corrupted_acc"].notna().any()


@variant_figure("clean_vs_corrupted", when=_has_corrupted_labels)
def clean_vs_corrupted(inputs: ReportInputs):
    """Running training accuracy on the examples whose labels were kept vs those a control replaced
    by random labels: fitting the random ones is memorization."""
    lines = {
        "train_clean_acc": "train, kept labels",
        "train_corrupted_acc": "train, random labels",
        "test_acc": "test",
    }
    noisy = inputs.epochs.dropna(subset=["train_corrupted_acc"])
    return plot_bands(
        percent(curve_bands(noisy, list(lines))), lines, "accuracy (%)", title="Fitting real vs random labels"
    )


@variant_figure("confusion_matrices")
@each_variant(lambda inputs: confusion(inputs.predictions))
def confusion_matrices(table: pd.DataFrame, inputs: ReportInputs):
    """Where the typical (median-accuracy) seed's final test predictions go, per true class."""
    import seaborn as sns

    dataset = table["dataset"].iloc[0]
    names = inputs.class_order[dataset]
    title = f"Confusion matrices of the median seed (% of each true class), {dataset}"
    fig, panels = panels_by(table, "model", (3.4, 3.3), title)
    for ax, model, rows in panels:
        matrix = (
            rows.pivot(index="label", columns="predicted", values="fraction_of_true")
            .reindex(index=names, columns=names)
            .fillna(0.0)
            * 100
        )
        sns.heatmap(
            matrix,
            ax=ax,
            cmap="Blues",
            vmin=0,
            vmax=100,
            cbar=False,
            square=True,
            annot=len(names) <= 10,
            fmt=".0f",
            annot_kws={"fontsize": 6},
        )
        ax.set_title(model, fontsize=9)
        ax.set(xlabel="predicted", ylabel="true")
        ax.tick_params(labelsize=6)
    return fig


@variant_figure("prediction_grid")
@each_variant(lambda inputs: inputs.predictions)
def prediction_grid(predictions: pd.DataFrame, inputs: ReportInputs):
    """The first test images as each architecture's median seed classifies them: confident mistakes
    are the memorizer's signature."""
    # One panel per model: a mosaic of the images with each prediction and its confidence (green
    # right, red wrong); controlled variants show their prepared data's images, before any control.
    dataset = predictions["dataset"].iloc[0]
    images = np.load(layout.images_file(inputs.prepared(dataset), "test"), mmap_mode="r")
    title = f"Test images: prediction and confidence (green right, red wrong), {dataset}"
    fig, panels = panels_by(predictions, "model", (3.4, 3.2), title)
    for ax, model, rows in panels:
        shown = rows.sort_values("index").head(GRID_IMAGES)
        tiles = [np.asarray(images[i]).transpose(1, 2, 0).astype(np.float32) for i in shown["index"]]
        picture, corners = mosaic(tiles, columns=4, gap=max(2, tiles[0].shape[0] // 3))
        ax.imshow(picture.squeeze() / 255, cmap=gray_or_color(tiles[0]), vmin=0, vmax=1)
        for (top, left), p in zip(corners, shown.itertuples(), strict=True):
            color = "#1a7f37" if p.predicted == p.label else "#c62828"
            ax.text(left, top, f"{p.predicted} {p.confidence:.0%}", fontsize=5.5, color=color, va="bottom")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(model, fontsize=9)
    return fig
