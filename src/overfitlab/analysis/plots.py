"""The report's figures, each registered with ``@figure`` (analysis/figures.py), in page order.

To add a figure, write one function here: decorate it with ``@figure(name=..., caption=...,
when=...)``, take the one ``ReportInputs`` argument and return a matplotlib figure (or a dict
``{key: figure}``). Put the numbers it draws in a function of analysis/tables.py when they deserve
a test. Nothing else changes: the report stage draws every registered figure, writes
``reports/figures/<name>.png`` and puts it with its caption into ``index.html``.

Why one file: the figures appear in the page in the order they are registered here, so the
page's order is this file's order; each figure is one function, its numbers in tables.py. Three
families are the exception, each in its own module imported at the end of this file (so they follow
these in their sections): the per-example figures (``memorization.py``), the double-descent ones
(``double_descent.py``) and the regularization one (``regularization.py``), each with its own table
and definitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data import layout
from .figures import ReportInputs, figure, gray_or_color, mosaic, panel_grid, per_variant
from .stats import pairwise
from .tables import axis_table, confusion, curve_bands, final_accuracy, is_geometric, null_named, percent

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


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


@figure(
    "final_test_accuracy",
    caption="Final test accuracy of every seed (points), with its box plot per architecture, one panel "
    "per dataset (variant); brackets: two-sided Mann-Whitney p-values (* = these seeds cannot reach "
    "p < 0.05: too few of them, or too many ties).",
)
def box_plot(inputs: ReportInputs):
    """Box plot + jittered points per model; brackets give the pairwise Mann-Whitney p-values."""
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


def plot_bands(bands: pd.DataFrame, metrics: dict[str, str], ylabel: str, log: bool = False, title: str = ""):
    """One panel per model (wrapped), one line with its band per metric; one figure per variant."""
    return per_variant(_band_panels, bands, metrics, ylabel, log, title)


def _band_panels(bands: pd.DataFrame, metrics: dict[str, str], ylabel: str, log: bool, title: str):
    from matplotlib.ticker import MaxNLocator

    dataset = bands["dataset"].iloc[0]
    models = list(dict.fromkeys(bands["model"]))
    fig, axes = panel_grid(len(models), (3.4, 2.9), f"{title} ({dataset})" if title else dataset, sharey=True)
    colors = dict(zip(metrics, PALETTE, strict=False))
    for ax, model in zip(axes, models, strict=True):
        for metric, label in metrics.items():
            b = bands[(bands.model == model) & (bands.metric == metric)]
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
    axes[0].legend(fontsize=8)
    return fig


def _test_lines(inputs: ReportInputs, kind: str) -> dict[str, str]:
    """Metric -> legend label: train and test, plus one line per extra test set (image folders)."""
    return {
        f"train_{kind}": "train",
        f"test_{kind}": "test",
        **{f"test_{kind}/{n}": f"test {n}" for n in inputs.extra_test_sets},
    }


@figure(
    "learning_curves",
    section="variant",
    caption="Training accuracy (running mean over each epoch, dropout on) and test accuracy "
    "(eval mode, full test set) per epoch; line = mean over seeds, band = 95 % t-interval.",
)
def learning_curves(inputs: ReportInputs):
    lines = _test_lines(inputs, "acc")
    return plot_bands(
        percent(curve_bands(inputs.epochs, list(lines))),
        lines,
        "accuracy (%)",
        title="Train vs test accuracy: mean over seeds, 95 % band",
    )


@figure(
    "generalization_gap",
    section="variant",
    caption="Train − test accuracy per epoch: a growing gap is memorization, not learning.",
)
def generalization_gap(inputs: ReportInputs):
    bands = percent(curve_bands(inputs.epochs, ["gap_acc"]), clip=False)
    return plot_bands(
        bands, {"gap_acc": "train − test"}, "accuracy gap (points)", title="Generalization gap per epoch"
    )


@figure(
    "loss_curves",
    section="variant",
    caption="Training and test loss (log scale; line = geometric mean over seeds, band = 95 % t-interval "
    "of the log loss). A test loss rising while training loss falls marks overfitting.",
)
def loss_curves(inputs: ReportInputs):
    lines = _test_lines(inputs, "loss")
    return plot_bands(
        curve_bands(inputs.epochs, list(lines), log=True),
        lines,
        "cross-entropy (log)",
        log=True,
        title="Train vs test loss",
    )


def _has_corrupted_labels(inputs: ReportInputs) -> bool:
    return "train_corrupted_acc" in inputs.epochs and inputs.epochs["train_corrupted_acc"].notna().any()


@figure(
    "clean_vs_corrupted",
    section="variant",
    when=_has_corrupted_labels,
    caption="Running training accuracy on the examples whose labels were kept vs those a control "
    "replaced by random labels: fitting the random ones is memorization.",
)
def clean_vs_corrupted(inputs: ReportInputs):
    lines = {
        "train_clean_acc": "train, kept labels",
        "train_corrupted_acc": "train, random labels",
        "test_acc": "test",
    }
    noisy = inputs.epochs.dropna(subset=["train_corrupted_acc"])
    return plot_bands(
        percent(curve_bands(noisy, list(lines))), lines, "accuracy (%)", title="Fitting real vs random labels"
    )


@figure(
    "confusion_matrices",
    section="variant",
    caption="Where the typical (median-accuracy) seed's final test predictions go, per true class.",
)
def confusion_matrices(inputs: ReportInputs):
    return per_variant(_confusion_panels, confusion(inputs.predictions), inputs.class_order)


def _confusion_panels(table: pd.DataFrame, class_order: dict):
    import seaborn as sns

    dataset = table["dataset"].iloc[0]
    names = class_order[dataset]
    models = list(dict.fromkeys(table["model"]))
    title = f"Confusion matrices of the median seed (% of each true class), {dataset}"
    fig, axes = panel_grid(len(models), (3.4, 3.3), title)
    for ax, model in zip(axes, models, strict=True):
        matrix = (
            table[table.model == model]
            .pivot(index="label", columns="predicted", values="fraction_of_true")
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


GRID_IMAGES = 12  # test images shown per model in the prediction grid (a 3 x 4 mosaic)


@figure(
    "prediction_grid",
    section="variant",
    caption="The first test images as each architecture's median seed classifies them: "
    "confident mistakes are the memorizer's signature.",
)
def prediction_grid(inputs: ReportInputs):
    """The first test images with each model's prediction and confidence: green right, red wrong.

    One panel per model (a mosaic of the images); controlled variants show their prepared data's
    images, before any control."""
    return per_variant(_prediction_panels, inputs.predictions, inputs)


def _prediction_panels(predictions: pd.DataFrame, inputs: ReportInputs):
    dataset = predictions["dataset"].iloc[0]
    images = np.load(layout.images_file(inputs.prepared(dataset), "test"), mmap_mode="r")
    models = list(dict.fromkeys(predictions["model"]))
    title = f"Test images: prediction and confidence (green right, red wrong), {dataset}"
    fig, axes = panel_grid(len(models), (3.4, 3.2), title)
    for ax, model in zip(axes, models, strict=True):
        shown = predictions[predictions.model == model].sort_values("index").head(GRID_IMAGES)
        tiles = [np.asarray(images[i]).transpose(1, 2, 0).astype(np.float32) for i in shown["index"]]
        picture, corners = mosaic(tiles, columns=4, gap=max(2, tiles[0].shape[0] // 3))
        ax.imshow(picture.squeeze() / 255, cmap=gray_or_color(tiles[0]), vmin=0, vmax=1)
        for (top, left), p in zip(corners, shown.itertuples(), strict=True):
            color = "#1a7f37" if p.predicted == p.label else "#c62828"
            ax.text(left, top, f"{p.predicted} {p.confidence:.0%}", fontsize=5.5, color=color, va="bottom")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(model, fontsize=9)
    return fig


@figure(
    "class_balance",
    section="inside",
    caption="Examples per class in the prepared training, validation and test splits "
    "(the class-balance check).",
)
def class_balance(inputs: ReportInputs):
    import seaborn as sns

    counts = inputs.counts
    by_data = {inputs.prepared(d): d for d in reversed(list(dict.fromkeys(counts["dataset"])))}
    datasets = list(reversed(by_data.values()))  # one panel per prepared data (variants share it)
    fig, axes = panel_grid(len(datasets), (6.8, 3.4), "Examples per class and split")
    for ax, dataset in zip(axes, datasets, strict=True):
        sns.barplot(data=counts[counts.dataset == dataset], x="class", y="count", hue="split", ax=ax)
        ax.set_title(str(inputs.prepared(dataset)), fontsize=9)
        ax.set(xlabel="")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    return fig


MAPS_SHOWN = 8  # channels shown per convolution in the feature-map figure


def _one_feature_map_figure(dataset: str, model: str, seed: int, maps_file, prepared: Path):
    """The test image, then one panel per convolution call: its first channels' outputs as a mosaic
    (each channel scaled to its own range), wrapped like every figure."""
    with np.load(maps_file) as npz:
        image_index = int(npz["image_index"])
        layers = {name: npz[name].astype(np.float32) for name in sorted(npz.files) if name != "image_index"}
    images = np.load(layout.images_file(prepared, "test"), mmap_mode="r")
    image = images[image_index].transpose(1, 2, 0)
    title = (
        f"{model} ({dataset}, seed={seed}): convolution outputs for test image {image_index}, "
        f"first {MAPS_SHOWN} channels, in call order"
    )
    fig, axes = panel_grid(1 + len(layers), (3.2, 2.0), title)
    axes[0].imshow(image.squeeze(), cmap=gray_or_color(image))
    axes[0].set_title("input", fontsize=8)
    for ax, (name, maps) in zip(axes[1:], layers.items(), strict=True):
        shown = maps[:MAPS_SHOWN]
        low = shown.min(axis=(1, 2), keepdims=True)
        span = np.maximum(shown.max(axis=(1, 2), keepdims=True) - low, 1e-12)
        picture, _ = mosaic(list(((shown - low) / span)[..., None]), columns=4, gap=1)
        ax.imshow(picture.squeeze(), cmap="viridis", vmin=0, vmax=1)
        shape = "×".join(str(n) for n in maps.shape[:3])
        ax.set_title(f"{name.split('_', 1)[1]} ({shape})", fontsize=8)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    return fig


@figure(
    "feature_maps",
    section="inside",
    when=lambda inputs: not inputs.feature_maps.empty,
    caption="What the typical (median) seed's convolutions compute from one test image (the same "
    "image as the first of the prediction grid): raw convolution outputs, bright = high.",
)
def feature_maps(inputs: ReportInputs):
    """One figure per CNN (median seed), named by whose maps they are."""
    return {
        f"{m.dataset}__{m.model}__seed={m.seed}": _one_feature_map_figure(
            m.dataset, m.model, m.seed, m.path, inputs.prepared(m.dataset)
        )
        for m in inputs.feature_maps.itertuples()
    }


def _axis_positions(values: list) -> tuple[dict, bool]:
    """Where each value of an axis goes on the x axis: itself (numbers; ``log`` when geometric) or
    its rank (strings, lists)."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        return {v: float(v) for v in values}, is_geometric(values)
    return {v: i for i, v in enumerate(values)}, False


@figure(
    "against_axis",
    section="question",
    when=lambda inputs: bool(inputs.varying_axes),
    caption="The study's question against each axis: final test accuracy (solid, 95 % t-interval of the "
    "mean; points: seeds) and training accuracy (dashed), the generalization gap, and the epochs needed to "
    "fit 99 % of the training labels (hollow: seeds that never fitted within the epoch budget), one line "
    "per model; one row per dataset and value of the other axes. Dotted: chance.",
)
def against_axis(inputs: ReportInputs):
    """One figure per varying axis (a log x axis where the values are geometric, e.g. learning rates)."""
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


SAMPLE_TILES = 8  # training tiles shown per class


@figure(
    "sample_tiles",
    section="inside",
    when=lambda inputs: bool(inputs.image_folders),
    caption="Tiles of the prepared training split per class, before rotation: what the network is given.",
)
def sample_tiles(inputs: ReportInputs):
    """One panel per class: unrotated training tiles from as many different source images as
    possible (the source study's show_batch), to see what the network is given."""
    metas = inputs.image_folders
    panels = [(d, c) for d, m in metas.items() for c in range(len(m["class_names"]))]
    title = "Training tiles per class (unrotated, from different source images)"
    fig, axes = panel_grid(len(panels), (3.2, 1.9), title)
    for ax, (dataset, label) in zip(axes, panels, strict=True):
        prepared = inputs.prepared(dataset)
        manifest = pd.read_csv(layout.manifest_file(prepared))
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)  # row i = image i
        plain = train[(train["label"] == label) & (train["rotation"] == 0) & (train["flip"] == "none")]
        plain = plain.sort_values(["source", "top", "left"])
        spread = plain.groupby("source").cumcount().rename("k")  # round-robin over the sources
        chosen = plain.assign(k=spread).sort_values(["k", "source"]).head(SAMPLE_TILES).index
        images = np.load(layout.images_file(prepared, "train"), mmap_mode="r")
        tiles = [np.asarray(images[i]).transpose(1, 2, 0).astype(np.float32) for i in chosen]
        if tiles:
            picture, _ = mosaic(tiles, columns=4, gap=2)
            ax.imshow(picture.squeeze() / 255, cmap=gray_or_color(tiles[0]), vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        name = metas[dataset]["class_names"][label] + (f" ({dataset})" if len(metas) > 1 else "")
        ax.set_title(name, fontsize=8)
    return fig


from . import double_descent, memorization, regularization  # noqa: E402, F401  (their figures after these)
