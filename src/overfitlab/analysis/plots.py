"""The report's figures, each registered with ``@figure`` (analysis/figures.py), in page order.

To add a figure, write one function here: decorate it with ``@figure(name=..., caption=...,
when=...)``, take the one ``ReportInputs`` argument and return a matplotlib figure (or a dict
``{key: figure}``). Put the numbers it draws in a function of analysis/tables.py when they deserve
a test. Nothing else changes: the report stage draws every registered figure, writes
``reports/figures/<name>.png`` and puts it with its caption into ``index.html``.

Why one file: the figures appear in the page in the order they are registered here, so the
page's order is this file's order; each figure is one function, its numbers in tables.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data import layout
from .figures import ReportInputs, figure
from .stats import pairwise
from .tables import axis_table, confusion, curve_bands, final_accuracy, is_geometric, percent

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
    caption="Final test accuracy of every seed (points), with its box plot per architecture; "
    "brackets: two-sided Mann-Whitney p-values (* = too few seeds for p < 0.05).",
)
def box_plot(inputs: ReportInputs):
    """Box plot + jittered points per model; brackets give the pairwise Mann-Whitney p-values."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    final = final_accuracy(inputs.runs)
    tests = pairwise(final)
    datasets = list(dict.fromkeys(final["dataset"]))
    width = 1.6 + 1.7 * max(2, final["model"].nunique()) * len(datasets)
    fig, axes = plt.subplots(1, len(datasets), figsize=(width, 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        data = final[final["dataset"] == dataset]
        sns.boxplot(
            data=data, x="model", y="test_acc_pct", ax=ax, color="#cfe0f3", showfliers=False, width=0.55
        )
        sns.stripplot(
            data=data, x="model", y="test_acc_pct", ax=ax, color="#1f4e79", size=5, jitter=0.18, alpha=0.85
        )
        ax.set(title=f"{dataset}: final test accuracy per seed", xlabel="", ylabel="test accuracy (%)")
        ax.tick_params(axis="x", rotation=20)
        if not tests.empty:
            _mark_tests(ax, data, tests[tests["dataset"] == dataset])
    fig.tight_layout()
    return fig


def plot_bands(bands: pd.DataFrame, metrics: dict[str, str], ylabel: str, log: bool = False, title: str = ""):
    """One panel per (dataset, model); one line with its band per metric."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = bands[["dataset", "model"]].drop_duplicates().values.tolist()
    datasets = list(dict.fromkeys(p[0] for p in panels))
    models = list(dict.fromkeys(p[1] for p in panels))
    fig, axes = plt.subplots(
        len(datasets),
        len(models),
        figsize=(3.6 * len(models), 3.2 * len(datasets)),
        squeeze=False,
        sharey=True,
    )
    colors = dict(zip(metrics, PALETTE, strict=False))
    for i, dataset in enumerate(datasets):
        for j, model in enumerate(models):
            ax = axes[i][j]
            for metric, label in metrics.items():
                b = bands[(bands.dataset == dataset) & (bands.model == model) & (bands.metric == metric)]
                if b.empty:
                    continue
                ax.plot(b["epoch"], b["mean"], color=colors[metric], label=label, marker="o", markersize=3)
                ax.fill_between(b["epoch"], b["low"], b["high"], color=colors[metric], alpha=0.2, linewidth=0)
            ax.set(title=f"{model}" + (f"\n{dataset}" if len(datasets) > 1 else ""), xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if log:
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
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
    caption="Train − test accuracy per epoch: a growing gap is memorization, not learning.",
)
def generalization_gap(inputs: ReportInputs):
    bands = percent(curve_bands(inputs.epochs, ["gap_acc"]), clip=False)
    return plot_bands(
        bands, {"gap_acc": "train − test"}, "accuracy gap (points)", title="Generalization gap per epoch"
    )


@figure(
    "loss_curves",
    caption="Training and test loss (log scale). A test loss rising while training loss falls marks "
    "overfitting.",
)
def loss_curves(inputs: ReportInputs):
    lines = _test_lines(inputs, "loss")
    return plot_bands(
        curve_bands(inputs.epochs, list(lines)),
        lines,
        "cross-entropy (log)",
        log=True,
        title="Train vs test loss",
    )


def _has_corrupted_labels(inputs: ReportInputs) -> bool:
    return "train_corrupted_acc" in inputs.epochs and inputs.epochs["train_corrupted_acc"].notna().any()


@figure(
    "clean_vs_corrupted",
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
    caption="Where the typical (median-accuracy) seed's final test predictions go, per true class.",
)
def confusion_matrices(inputs: ReportInputs):
    import matplotlib.pyplot as plt
    import seaborn as sns

    table, class_order = confusion(inputs.predictions), inputs.class_order
    panels = table[["dataset", "model"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels, strict=True):
        names = class_order[dataset]
        matrix = (
            table[(table.dataset == dataset) & (table.model == model)]
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
            annot_kws={"fontsize": 7},
        )
        ax.set(
            title=f"{model}" + (f" ({dataset})" if len(class_order) > 1 else ""),
            xlabel="predicted",
            ylabel="true",
        )
        ax.tick_params(labelsize=7)
    fig.suptitle("Confusion matrices of the median seed (% of each true class)")
    fig.tight_layout()
    return fig


GRID_IMAGES = 10  # test images shown per model in the prediction grid


def _gray_or_color(image: np.ndarray) -> str | None:
    return "gray" if image.shape[2] == 1 else None


@figure(
    "prediction_grid",
    caption="The first test images as each architecture's median seed classifies them: "
    "confident mistakes are the memorizer's signature.",
)
def prediction_grid(inputs: ReportInputs):
    """The first test images with each model's prediction and confidence: green right, red wrong.

    Controlled variants show their prepared data's images, before any control.
    """
    import matplotlib.pyplot as plt

    predictions = inputs.predictions
    panels = predictions[["dataset", "model"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(
        len(panels), GRID_IMAGES, figsize=(1.25 * GRID_IMAGES, 2.1 * len(panels)), squeeze=False
    )
    for row, (dataset, model) in enumerate(panels):
        images = np.load(layout.images_file(inputs.prepared(dataset), "test"), mmap_mode="r")
        shown = predictions[(predictions.dataset == dataset) & (predictions.model == model)]
        shown = shown.sort_values("index")
        for col, p in enumerate(shown.head(GRID_IMAGES).itertuples()):
            ax = axes[row][col]
            image = np.asarray(images[p.index]).transpose(1, 2, 0)
            ax.imshow(image.squeeze(), cmap=_gray_or_color(image))
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(
                f"{p.predicted}\n{p.confidence:.0%}",
                fontsize=7,
                color="#1a7f37" if p.predicted == p.label else "#c62828",
            )
            ax.set_xlabel(p.label, fontsize=7)
        axes[row][0].set_ylabel(model, fontsize=8)
    fig.suptitle("Test images: predicted class and confidence (green right, red wrong); true class below")
    fig.tight_layout(h_pad=1.5)
    return fig


@figure(
    "class_balance",
    caption="Examples per class in the prepared training, validation and test splits "
    "(the class-balance check).",
)
def class_balance(inputs: ReportInputs):
    import matplotlib.pyplot as plt
    import seaborn as sns

    counts = inputs.counts
    by_data = {inputs.prepared(d): d for d in reversed(list(dict.fromkeys(counts["dataset"])))}
    datasets = list(reversed(by_data.values()))  # one panel per prepared data (variants share it)
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sns.barplot(data=counts[counts.dataset == dataset], x="class", y="count", hue="split", ax=ax)
        ax.set(title=f"{inputs.prepared(dataset)}: examples per class and split", xlabel="")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    return fig


MAPS_SHOWN = 8  # channels shown per convolution in the feature-map figure


def _one_feature_map_figure(dataset: str, model: str, seed: int, maps_file, prepared: Path):
    """One row per convolution call: the test image, then its first channels' outputs."""
    import matplotlib.pyplot as plt

    with np.load(maps_file) as npz:
        image_index = int(npz["image_index"])
        layers = {name: npz[name].astype(np.float32) for name in sorted(npz.files) if name != "image_index"}
    images = np.load(layout.images_file(prepared, "test"), mmap_mode="r")
    image = images[image_index].transpose(1, 2, 0)
    fig, axes = plt.subplots(
        len(layers), MAPS_SHOWN + 1, squeeze=False, figsize=(1.3 * (MAPS_SHOWN + 1), 1.45 * len(layers))
    )
    for row, (name, maps) in enumerate(layers.items()):
        axes[row][0].imshow(image.squeeze(), cmap=_gray_or_color(image))
        shape = "×".join(str(n) for n in maps.shape[:3])
        axes[row][0].set_ylabel(f"{name.split('_', 1)[1]}\n{shape}", fontsize=7)
        for col in range(MAPS_SHOWN):
            ax = axes[row][col + 1]
            if col < len(maps):
                ax.imshow(maps[col], cmap="viridis")
            ax.axis("off")
        axes[row][0].set_xticks([]), axes[row][0].set_yticks([])
    fig.suptitle(
        f"{model} ({dataset}, seed={seed}): convolution outputs for test image {image_index}, "
        f"first {MAPS_SHOWN} channels, in call order"
    )
    fig.tight_layout()
    return fig


@figure(
    "feature_maps",
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
    when=lambda inputs: bool(inputs.varying_axes),
    caption="The study's question against each axis: final test accuracy (solid, 95 % t-interval of the "
    "mean; points: seeds) and training accuracy (dashed), the generalization gap, and the epochs needed to "
    "fit 99 % of the training labels (hollow: seeds that never fitted within the epoch budget), one line "
    "per model; one row per dataset and value of the other axes. Dotted: chance.",
)
def against_axis(inputs: ReportInputs):
    """One figure per varying axis (a log x axis where the values are geometric, e.g. learning rates)."""
    import matplotlib.pyplot as plt

    runs, figures = inputs.runs, {}
    for axis in inputs.varying_axes:
        others = [a for a in inputs.varying_axes if a != axis]
        table = axis_table(runs, axis, others)
        rows = table[["dataset", *others]].drop_duplicates().values.tolist()
        values = sorted(runs[axis].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
        where, log = _axis_positions(values)
        fig, axes = plt.subplots(len(rows), 3, figsize=(15, 3.9 * len(rows)), squeeze=False)
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
        fig.tight_layout()
        figures[axis] = fig
    return figures


SAMPLE_TILES = 8  # training tiles shown per class


@figure(
    "sample_tiles",
    when=lambda inputs: bool(inputs.image_folders),
    caption="Tiles of the prepared training split per class, before rotation: what the network is given.",
)
def sample_tiles(inputs: ReportInputs):
    """One row per class: unrotated training tiles from as many different source images as possible
    (the source study's show_batch), to see what the network is given."""
    import matplotlib.pyplot as plt

    metas, prepared_root = inputs.image_folders, inputs.prepared_root
    rows = [(d, c) for d, m in metas.items() for c in range(len(m["class_names"]))]
    fig, axes = plt.subplots(
        len(rows), SAMPLE_TILES, figsize=(1.1 * SAMPLE_TILES, 1.25 * len(rows)), squeeze=False
    )
    for row, (dataset, label) in enumerate(rows):
        manifest = pd.read_csv(layout.manifest_file(prepared_root / dataset))
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)  # row i = image i
        plain = train[(train["label"] == label) & (train["rotation"] == 0) & (train["flip"] == "none")]
        plain = plain.sort_values(["source", "top", "left"])
        spread = plain.groupby("source").cumcount().rename("k")  # round-robin over the sources
        chosen = plain.assign(k=spread).sort_values(["k", "source"]).head(SAMPLE_TILES).index
        images = np.load(layout.images_file(prepared_root / dataset, "train"), mmap_mode="r")
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([]), ax.set_yticks([])
            if col < len(chosen):
                image = np.asarray(images[chosen[col]]).transpose(1, 2, 0)
                ax.imshow(image.squeeze(), cmap=_gray_or_color(image), vmin=0, vmax=255)
        name = metas[dataset]["class_names"][label] + (f"\n({dataset})" if len(metas) > 1 else "")
        axes[row][0].set_ylabel(name, fontsize=8)
    fig.suptitle("Training tiles per class (unrotated, from different source images)")
    fig.tight_layout()
    return fig
