"""Stage ``report``: the tidy table -> seaborn figures and a self-contained ``reports/index.html``.

Each figure is drawn from a small table computed first (``final_accuracy``, ``curve_bands``,
``summary_table``); those tables are what the tests check.

    python -m overfitlab.report
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .collect import extra_test_sets
from .errors import exit_on_config_error, require
from .files import atomic_write_bytes, atomic_write_text
from .analysis.stats import bootstrap_ci, pairwise

BAND_LEVEL = 0.95


def final_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the box plot: final test accuracy (percent) of every run. Each extra test
    set of an image-folder dataset is a panel of its own, named ``<dataset> | test@<name>``."""
    keys = ["dataset", "model", "seed"]
    frames = [runs[keys + ["final_test_acc"]]]
    for name in extra_test_sets(runs.columns):
        column = f"final_test_acc/{name}"
        extra = runs.loc[runs[column].notna(), keys + [column]].rename(columns={column: "final_test_acc"})
        frames.append(extra.assign(dataset=extra["dataset"] + f" | test@{name}"))
    table = pd.concat(frames, ignore_index=True)
    table["test_acc_pct"] = 100.0 * table.pop("final_test_acc")
    return table.sort_values(["dataset", "model", "seed"]).reset_index(drop=True)


def curve_bands(epochs: pd.DataFrame, metrics: list[str], level: float = BAND_LEVEL) -> pd.DataFrame:
    """Mean over seeds per (dataset, model, metric, epoch) with a t-based confidence band.

    The band is mean +/- t(n-1) * sd / sqrt(n): with the few seeds a study affords, the
    t quantile (not 1.96) is what makes it a 95 % interval. With one seed the band is the line.
    """
    from scipy import stats

    long = epochs.melt(id_vars=["dataset", "model", "seed", "epoch"], value_vars=metrics,
                       var_name="metric", value_name="value").dropna(subset=["value"])  # extra test sets
    grouped = long.groupby(["dataset", "model", "metric", "epoch"], sort=True)["value"]
    bands = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    half = stats.t.ppf(0.5 + level / 2, (bands["n"] - 1).clip(lower=1)) * bands["sd"] / np.sqrt(bands["n"])
    half = half.where(bands["n"] > 1, 0.0).fillna(0.0)
    bands["low"], bands["high"] = bands["mean"] - half, bands["mean"] + half
    return bands


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and model: parameters, seeds, final test accuracy mean +/- sd, best epoch."""
    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=True):
        rows.append({
            "dataset": dataset, "model": model, "params": int(g["n_params"].iloc[0]), "seeds": len(g),
            "test_acc_mean": 100 * g["final_test_acc"].mean(),
            "test_acc_sd": 100 * g["final_test_acc"].std(ddof=1) if len(g) > 1 else float("nan"),
            **dict(zip(("test_acc_ci_low", "test_acc_ci_high"),
                       (100 * v for v in bootstrap_ci(g["final_test_acc"])))),
            "train_acc_mean": 100 * g["final_train_acc"].mean(),
            "gap_mean": 100 * g["final_gap_acc"].mean(),
            "best_epoch_median": float(g["best_test_epoch"].median()),
            "best_test_acc_mean": 100 * g["best_test_acc"].mean(),
            "fit_epoch_median": float(g["fit_epoch"].median()) if g["fit_epoch"].notna().any() else float("nan"),
            "seeds_fitted": int(g["fit_epoch"].notna().sum()),
            "conf_wrong_mean": 100 * g.get("final_test_conf_wrong", pd.Series(dtype=float)).mean(),
            "ece_mean": g.get("final_test_ece", pd.Series(dtype=float)).mean(),
            **{f"test_acc_mean/{n}": 100 * g[f"final_test_acc/{n}"].mean() for n in extra_test_sets(g.columns)},
        })
    return pd.DataFrame(rows)


def confusion(predictions: pd.DataFrame) -> pd.DataFrame:
    """Counts per (dataset, model, true label, predicted label), with the row-normalized fraction."""
    counts = predictions.groupby(["dataset", "model", "label", "predicted"]).size().rename("count").reset_index()
    counts["fraction_of_true"] = counts["count"] / counts.groupby(["dataset", "model", "label"])["count"].transform("sum")
    return counts


def per_class_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall and F1 per class for each (dataset, model); classes never predicted get precision 0."""
    rows = []
    for (dataset, model), p in predictions.groupby(["dataset", "model"], sort=True):
        for name in sorted(set(p["label"]) | set(p["predicted"])):
            tp = int(((p.label == name) & (p.predicted == name)).sum())
            predicted, actual = int((p.predicted == name).sum()), int((p.label == name).sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append({"dataset": dataset, "model": model, "seed": int(p.seed.iloc[0]), "class": name,
                         "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return pd.DataFrame(rows)


def plot_confusions(table: pd.DataFrame, class_order: dict[str, list[str]]):
    import matplotlib.pyplot as plt
    import seaborn as sns

    panels = table[["dataset", "model"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels):
        names = class_order[dataset]
        matrix = (table[(table.dataset == dataset) & (table.model == model)]
                  .pivot(index="label", columns="predicted", values="fraction_of_true")
                  .reindex(index=names, columns=names).fillna(0.0) * 100)
        sns.heatmap(matrix, ax=ax, cmap="Blues", vmin=0, vmax=100, cbar=False, square=True,
                    annot=len(names) <= 10, fmt=".0f", annot_kws={"fontsize": 7})
        ax.set(title=f"{model}" + (f" ({dataset})" if len(class_order) > 1 else ""), xlabel="predicted", ylabel="true")
        ax.tick_params(labelsize=7)
    fig.suptitle("Confusion matrices of the median seed (% of each true class)")
    fig.tight_layout()
    return fig


def plot_class_balance(counts: pd.DataFrame):
    import matplotlib.pyplot as plt
    import seaborn as sns

    datasets = list(dict.fromkeys(counts["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sns.barplot(data=counts[counts.dataset == dataset], x="class", y="count", hue="split", ax=ax)
        ax.set(title=f"{dataset}: examples per class and split", xlabel="")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    return fig


def noise_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, label-noise fraction p): the randomization test's numbers (percent).

    Test accuracy with its bootstrap interval, final training accuracy on the kept and on the
    replaced labels, and the time to fit (median epoch over the seeds that reached 99 %).
    """
    rows = []
    for (dataset, model, p), g in runs.groupby(["source_dataset", "model", "label_noise"], sort=True):
        low, high = bootstrap_ci(g["final_test_acc"])
        fitted = g["fit_epoch"].dropna()
        rows.append({
            "dataset": dataset, "model": model, "label_noise": p, "seeds": len(g),
            "test_acc_mean": 100 * g["final_test_acc"].mean(), "test_acc_ci_low": 100 * low,
            "test_acc_ci_high": 100 * high, "train_acc_mean": 100 * g["final_train_acc"].mean(),
            "train_clean_acc_mean": 100 * g["final_train_clean_acc"].mean() if p else 100 * g["final_train_acc"].mean(),
            "train_corrupted_acc_mean": 100 * g["final_train_corrupted_acc"].mean() if p else float("nan"),
            "fit_epoch_median": float(fitted.median()) if len(fitted) else float("nan"),
            "seeds_fitted": len(fitted), "epochs": int(g["epochs"].max()),
        })
    return pd.DataFrame(rows)


def plot_noise(runs: pd.DataFrame, table: pd.DataFrame, n_classes: dict[str, int]):
    """Final accuracy and time to fit against the fraction of random labels, one line per model."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
    colors = dict(zip(dict.fromkeys(table["model"]), plt.get_cmap("tab10").colors))
    for (ax_acc, ax_fit), dataset in zip(axes, datasets):
        for model, t in table[table.dataset == dataset].groupby("model", sort=False):
            c = colors[model]
            ax_acc.plot(t.label_noise, t.test_acc_mean, "o-", color=c, label=f"{model}: test")
            ax_acc.fill_between(t.label_noise, t.test_acc_ci_low, t.test_acc_ci_high, color=c, alpha=0.15, linewidth=0)
            ax_acc.plot(t.label_noise, t.train_acc_mean, "s--", color=c, alpha=0.7, label=f"{model}: train")
            r = runs[(runs.source_dataset == dataset) & (runs.model == model)]
            ax_acc.scatter(r.label_noise, 100 * r.final_test_acc, color=c, s=10, alpha=0.5)
            # Seeds that never fit the training set are drawn one epoch past the budget, hollow.
            never = r.epochs.max() + 1
            fit = r.fit_epoch.fillna(never)
            ax_fit.plot(t.label_noise, t.fit_epoch_median, "o-", color=c, label=model)
            never_fit = r.fit_epoch.isna()
            ax_fit.scatter(r.label_noise[~never_fit], fit[~never_fit], s=18, color=c, alpha=0.7)
            ax_fit.scatter(r.label_noise[never_fit], fit[never_fit], s=18, facecolors="none", edgecolors=[c], alpha=0.7)
            ax_fit.axhline(never, color="#999", linestyle=":", linewidth=0.8)
        ax_acc.axhline(100 / n_classes[dataset], color="#999", linestyle=":", linewidth=0.8)
        ax_acc.set(title=f"{dataset}: final accuracy vs random-label fraction", xlabel="fraction of training labels "
                   "made random (p)", ylabel="accuracy (%)")
        ax_fit.set(title=f"{dataset}: time to fit the training set (99 %)", xlabel="p",
                   ylabel="epochs (dotted line: never fitted)")
        ax_acc.legend(fontsize=7, ncol=2)
        ax_fit.legend(fontsize=7)
        for ax in (ax_acc, ax_fit):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


GRID_IMAGES = 10  # test images shown per model in the prediction grid


def plot_prediction_grid(predictions: pd.DataFrame, prepared_root: Path):
    """The first test images with each model's prediction and confidence: green right, red wrong.

    Controlled variants (``dataset+...``) show their base dataset's images, before any control.
    """
    import matplotlib.pyplot as plt

    panels = predictions[["dataset", "model"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(len(panels), GRID_IMAGES, figsize=(1.25 * GRID_IMAGES, 2.1 * len(panels)),
                             squeeze=False)
    for row, (dataset, model) in enumerate(panels):
        images = np.load(prepared_root / dataset.split("+")[0] / "test_images.npy", mmap_mode="r")
        shown = predictions[(predictions.dataset == dataset) & (predictions.model == model)].sort_values("index")
        for col, p in enumerate(shown.head(GRID_IMAGES).itertuples()):
            ax = axes[row][col]
            image = np.asarray(images[p.index]).transpose(1, 2, 0)
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[2] == 1 else None)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{p.predicted}\n{p.confidence:.0%}", fontsize=7,
                         color="#1a7f37" if p.predicted == p.label else "#c62828")
            ax.set_xlabel(p.label, fontsize=7)
        axes[row][0].set_ylabel(model, fontsize=8)
    fig.suptitle("Test images: predicted class and confidence (green right, red wrong); true class below")
    fig.tight_layout(h_pad=1.5)
    return fig


MAPS_SHOWN = 8  # channels shown per convolution in the feature-map figure


def plot_feature_maps(maps_file: Path, prepared_root: Path):
    """One row per convolution call: the test image, then its first channels' outputs."""
    import matplotlib.pyplot as plt

    dataset, model, seed = maps_file.stem.split("__")
    with np.load(maps_file) as npz:
        image_index = int(npz["image_index"])
        layers = {name: npz[name].astype(np.float32) for name in sorted(npz.files) if name != "image_index"}
    image = np.load(prepared_root / dataset / "test_images.npy", mmap_mode="r")[image_index].transpose(1, 2, 0)
    fig, axes = plt.subplots(len(layers), MAPS_SHOWN + 1, figsize=(1.3 * (MAPS_SHOWN + 1), 1.45 * len(layers)),
                             squeeze=False)
    for row, (name, maps) in enumerate(layers.items()):
        axes[row][0].imshow(image.squeeze(), cmap="gray" if image.shape[2] == 1 else None)
        axes[row][0].set_ylabel(f"{name.split('_', 1)[1]}\n{maps.shape[0]}×{maps.shape[1]}×{maps.shape[2]}", fontsize=7)
        for col in range(MAPS_SHOWN):
            ax = axes[row][col + 1]
            if col < len(maps):
                ax.imshow(maps[col], cmap="viridis")
            ax.axis("off")
        axes[row][0].set_xticks([]), axes[row][0].set_yticks([])
    fig.suptitle(f"{model} ({dataset}, {seed}): convolution outputs for test image {image_index}, "
                 f"first {MAPS_SHOWN} channels, in call order")
    fig.tight_layout()
    return fig


SAMPLE_TILES = 8  # training tiles shown per class


def image_folder_metas(counts: pd.DataFrame, prepared_root: Path) -> dict[str, dict]:
    """meta.json of each image-folder dataset of the study (skipped files, leakage check, ...)."""
    metas = {}
    for dataset in dict.fromkeys(counts["dataset"]):
        meta_file = prepared_root / dataset / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if meta.get("loader") == "image_folder":
            metas[dataset] = meta
    return metas


def plot_sample_tiles(metas: dict[str, dict], prepared_root: Path):
    """One row per class: unrotated training tiles from as many different source images as possible
    (the source study's show_batch), to see what the network is given."""
    import matplotlib.pyplot as plt

    rows = [(d, c) for d, m in metas.items() for c in range(len(m["class_names"]))]
    fig, axes = plt.subplots(len(rows), SAMPLE_TILES, figsize=(1.1 * SAMPLE_TILES, 1.25 * len(rows)), squeeze=False)
    for row, (dataset, label) in enumerate(rows):
        manifest = pd.read_csv(prepared_root / dataset / "manifest.csv")
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)  # row i = image i
        plain = train[(train["label"] == label) & (train["rotation"] == 0) & (train["flip"] == "none")]
        plain = plain.sort_values(["source", "top", "left"])
        spread = plain.groupby("source").cumcount().rename("k")  # round-robin over the sources
        chosen = plain.assign(k=spread).sort_values(["k", "source"]).head(SAMPLE_TILES).index
        images = np.load(prepared_root / dataset / "train_images.npy", mmap_mode="r")
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([]), ax.set_yticks([])
            if col < len(chosen):
                image = np.asarray(images[chosen[col]]).transpose(1, 2, 0)
                ax.imshow(image.squeeze(), cmap="gray" if image.shape[2] == 1 else None, vmin=0, vmax=255)
        axes[row][0].set_ylabel(metas[dataset]["class_names"][label] + (f"\n({dataset})" if len(metas) > 1 else ""),
                                fontsize=8)
    fig.suptitle("Training tiles per class (unrotated, from different source images)")
    fig.tight_layout()
    return fig



def image_folder_html(metas: dict[str, dict]) -> str:
    """What prepare did to each image folder: files skipped and why, background dropped, leakage check."""
    parts = []
    for dataset, meta in metas.items():
        leak = meta["leakage"]
        verdict = ("no tile content appears in two splits" if leak["shared_contents"] == 0 else
                   f"<b>{leak['shared_contents']} tile contents appear in two splits</b> {leak['pairs']}")
        skipped = pd.DataFrame(meta["skipped"], columns=["file", "reason"])
        unreadable = skipped[~skipped["reason"].str.startswith("ignored")]
        parts.append(
            f"<h3>{html.escape(dataset)}</h3><p>{meta['source_files']} source files, split by "
            f"{html.escape(meta['split_by'])} (source groups per split: {meta['groups_per_split']}); "
            f"examples per split: {meta['counts']}. Leakage check (content hash of all "
            f"{leak['examples_checked']} examples): {verdict}. Tiles dropped as background: "
            f"{meta['background_dropped']}. {len(unreadable)} file(s) skipped as unusable, "
            f"{len(skipped) - len(unreadable)} ignored (hidden, phantom or not an image).</p>"
            + (unreadable.to_html(index=False, border=0, classes="table") if len(unreadable) else ""))
    return "<h2>Image-folder data (prepare)</h2>\n" + "\n".join(parts) if parts else ""


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def plot_box(final: pd.DataFrame, tests: pd.DataFrame | None = None):
    """Box plot + jittered points per model; brackets give the pairwise Mann-Whitney p-values."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    datasets = list(dict.fromkeys(final["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(1.6 + 1.7 * max(2, final["model"].nunique()) * len(datasets), 4.2),
                             squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        data = final[final["dataset"] == dataset]
        sns.boxplot(data=data, x="model", y="test_acc_pct", ax=ax, color="#cfe0f3", showfliers=False, width=0.55)
        sns.stripplot(data=data, x="model", y="test_acc_pct", ax=ax, color="#1f4e79", size=5, jitter=0.18,
                      alpha=0.85)
        ax.set(title=f"{dataset}: final test accuracy per seed", xlabel="", ylabel="test accuracy (%)")
        ax.tick_params(axis="x", rotation=20)
        if tests is not None and not tests.empty:
            _mark_tests(ax, data, tests[tests["dataset"] == dataset])
    fig.tight_layout()
    return fig


def _mark_tests(ax, data: pd.DataFrame, tests: pd.DataFrame) -> None:
    positions = {label.get_text(): i for i, label in enumerate(ax.get_xticklabels())}
    top, span = data["test_acc_pct"].max(), max(data["test_acc_pct"].max() - data["test_acc_pct"].min(), 1.0)
    for k, t in enumerate(tests.itertuples()):
        x1, x2 = sorted((positions[t.a], positions[t.b]))
        y = top + span * (0.08 + 0.12 * k)
        ax.plot([x1, x1, x2, x2], [y - span * 0.02, y, y, y - span * 0.02], color="#555", linewidth=0.8)
        ax.text((x1 + x2) / 2, y, f"p={t.p:.2g}" + ("*" if t.note else ""), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(top=top + span * (0.15 + 0.12 * len(tests)))


def plot_bands(bands: pd.DataFrame, metrics: dict[str, str], ylabel: str, log: bool = False, title: str = ""):
    """One panel per (dataset, model); one line with its band per metric."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = bands[["dataset", "model"]].drop_duplicates().values.tolist()
    datasets = list(dict.fromkeys(p[0] for p in panels))
    models = list(dict.fromkeys(p[1] for p in panels))
    fig, axes = plt.subplots(len(datasets), len(models), figsize=(3.6 * len(models), 3.2 * len(datasets)),
                             squeeze=False, sharey=True)
    colors = dict(zip(metrics, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]))
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


def _percent(bands: pd.DataFrame, clip: bool = True) -> pd.DataFrame:
    """Fractions -> percent; accuracy bands are clipped to the possible 0..100 %."""
    bands = bands.copy()
    bands[["mean", "low", "high"]] *= 100
    if clip:
        bands[["low", "high"]] = bands[["low", "high"]].clip(0, 100)
    return bands


def figures(epochs: pd.DataFrame, runs: pd.DataFrame, predictions: pd.DataFrame,
            counts: pd.DataFrame, prepared_root: Path, maps_files: list[Path] = ()) -> dict[str, object]:
    import matplotlib

    matplotlib.use("Agg")
    np.random.seed(0)  # seaborn's strip-plot jitter draws from numpy's global generator
    extras = extra_test_sets(epochs.columns)  # one more curve per extra test set (image folders)
    acc_lines = {"train_acc": "train", "test_acc": "test", **{f"test_acc/{n}": f"test {n}" for n in extras}}
    loss_lines = {"train_loss": "train", "test_loss": "test", **{f"test_loss/{n}": f"test {n}" for n in extras}}
    acc = _percent(curve_bands(epochs, list(acc_lines)))
    gap = _percent(curve_bands(epochs, ["gap_acc"]), clip=False)
    loss = curve_bands(epochs, list(loss_lines))
    figs = {
        "final_test_accuracy": plot_box(final_accuracy(runs), pairwise(final_accuracy(runs))),
        "learning_curves": plot_bands(acc, acc_lines, "accuracy (%)",
                                      title="Train vs test accuracy: mean over seeds, 95 % band"),
        "generalization_gap": plot_bands(gap, {"gap_acc": "train − test"}, "accuracy gap (points)",
                                         title="Generalization gap per epoch"),
        "loss_curves": plot_bands(loss, loss_lines, "cross-entropy (log)",
                                  log=True, title="Train vs test loss"),
    }
    if "train_corrupted_acc" in epochs and epochs["train_corrupted_acc"].notna().any():
        noisy = _percent(curve_bands(epochs.dropna(subset=["train_corrupted_acc"]),
                                     ["train_clean_acc", "train_corrupted_acc", "test_acc"]))
        figs["clean_vs_corrupted"] = plot_bands(
            noisy, {"train_clean_acc": "train, kept labels", "train_corrupted_acc": "train, random labels",
                    "test_acc": "test"}, "accuracy (%)", title="Fitting real vs random labels")
    class_order = {d: list(dict.fromkeys(g["class"])) for d, g in counts.groupby("dataset")}
    for dataset in predictions["dataset"].unique():  # a controlled variant shares its dataset's classes
        class_order.setdefault(dataset, class_order.get(dataset.split("+")[0], sorted(set(predictions["label"]))))
    figs["confusion_matrices"] = plot_confusions(confusion(predictions), class_order)
    figs["prediction_grid"] = plot_prediction_grid(predictions, prepared_root)
    figs["class_balance"] = plot_class_balance(counts)
    for maps_file in maps_files:
        figs[f"feature_maps__{maps_file.stem}"] = plot_feature_maps(maps_file, prepared_root)
    if runs["label_noise"].nunique() > 1:
        figs["label_noise"] = plot_noise(runs, noise_table(runs), counts.groupby("dataset")["class"].nunique().to_dict())
    folders = image_folder_metas(counts, prepared_root)
    if folders:
        figs["sample_tiles"] = plot_sample_tiles(folders, prepared_root)
    return figs


CAPTIONS = {
    "final_test_accuracy": "Final test accuracy of every seed (points), with its box plot per architecture; "
                           "brackets: two-sided Mann-Whitney p-values (* = too few seeds for p < 0.05).",
    "learning_curves": "Training accuracy (running mean over each epoch, dropout on) and test accuracy "
                       "(eval mode, full test set) per epoch; line = mean over seeds, band = 95 % t-interval.",
    "generalization_gap": "Train − test accuracy per epoch: a growing gap is memorization, not learning.",
    "loss_curves": "Training and test loss (log scale). A test loss rising while training loss falls marks overfitting.",
    "confusion_matrices": "Where the typical (median-accuracy) seed's final test predictions go, per true class.",
    "prediction_grid": "The first test images as each architecture's median seed classifies them: "
                       "confident mistakes are the memorizer's signature.",
    "class_balance": "Examples per class in the prepared training, validation and test splits (the class-balance check).",
    "feature_maps": "What the typical (median) seed's convolutions compute from one test image (the same "
                    "image as the first of the prediction grid): raw convolution outputs, bright = high.",
    "label_noise": "The randomization test (Zhang et al. 2017): final test (solid, 95 % bootstrap band) and "
                   "training (dashed) accuracy, and the epochs needed to fit 99 % of the training labels, "
                   "against the fraction p of training labels replaced by random ones (dotted: chance; "
                   "hollow points: seeds that never fitted within the epoch budget).",
    "sample_tiles": "Tiles of the prepared training split per class, before rotation: what the network is given.",
    "clean_vs_corrupted": "Running training accuracy on the examples whose labels were kept vs those a control "
                          "replaced by random labels: fitting the random ones is memorization.",
}


def render_html(images: dict[str, bytes], summary: pd.DataFrame, runs: pd.DataFrame,
                tests: pd.DataFrame, scores: pd.DataFrame, noise: pd.DataFrame | None = None,
                data_section: str = "") -> str:
    def fmt_summary(df: pd.DataFrame) -> str:
        shown = pd.DataFrame({
            "dataset": df["dataset"], "model": df["model"], "parameters": df["params"].map("{:,}".format),
            "seeds": df["seeds"],
            "final test acc (%)": [f"{m:.2f} ± {s:.2f}" if s == s else f"{m:.2f}"
                                   for m, s in zip(df["test_acc_mean"], df["test_acc_sd"])],
            "95 % CI of mean (bootstrap)": [f"{lo:.2f} – {hi:.2f}" if lo == lo else "n < 2"
                                            for lo, hi in zip(df["test_acc_ci_low"], df["test_acc_ci_high"])],
            "final train acc (%)": df["train_acc_mean"].map("{:.2f}".format),
            "gap (points)": df["gap_mean"].map("{:.2f}".format),
            "best epoch (median)": df["best_epoch_median"].map("{:g}".format),
            "best test acc (%)": df["best_test_acc_mean"].map("{:.2f}".format),
            "epochs to fit 99 % (median; seeds that did)": [f"{e:g} ({n})" if n else "never (0)"
                                                        for e, n in zip(df["fit_epoch_median"], df["seeds_fitted"])],
            "confidently wrong (%)": df["conf_wrong_mean"].map("{:.2f}".format),
            "ECE": df["ece_mean"].map("{:.3f}".format),
            **{f"final test acc, {c.split('/', 1)[1]} (%)": df[c].map("{:.2f}".format)
               for c in df.columns if c.startswith("test_acc_mean/")},  # extra test sets
        })
        return shown.to_html(index=False, border=0, classes="table")

    def fmt_tests(df: pd.DataFrame) -> str:
        if df.empty:
            return "<p>Only one architecture per dataset: nothing to compare.</p>"
        shown = df.assign(**{"median A (%)": df["median_a"].map("{:.2f}".format),
                             "median B (%)": df["median_b"].map("{:.2f}".format),
                             "p": df["p"].map("{:.3g}".format), "Cliff's δ": df["cliffs_delta"].map("{:+.2f}".format)})
        cols = ["dataset", "a", "b", "n_a", "n_b", "median A (%)", "median B (%)", "U", "p", "Cliff's δ", "note"]
        return shown[cols].rename(columns={"a": "A", "b": "B"}).to_html(index=False, border=0, classes="table")

    def fmt_noise(df: pd.DataFrame | None) -> str:
        if df is None:
            return ""
        shown = df.rename(columns={"label_noise": "p (random labels)", "test_acc_mean": "test acc (%)",
                                   "train_clean_acc_mean": "train acc, kept labels (%)",
                                   "train_corrupted_acc_mean": "train acc, random labels (%)",
                                   "fit_epoch_median": "epochs to fit 99 % (median)", "seeds_fitted": "seeds fitted"})
        cols = ["dataset", "model", "p (random labels)", "seeds", "test acc (%)", "train acc, kept labels (%)",
                "train acc, random labels (%)", "epochs to fit 99 % (median)", "seeds fitted", "epochs"]
        return ("<h2>Randomization test: final numbers per fraction of random labels</h2>"
                + shown[cols].to_html(index=False, border=0, classes="table", float_format=lambda v: f"{v:.2f}",
                                      na_rep="–"))

    provenance = runs[["dataset", "model", "seed", "final_test_acc", "final_train_acc", "best_test_epoch",
                       "wall_time_s", "device", "git_commit", "data_version", "config_hash", "mlflow_run_id"]]
    figs = "\n".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(CAPTIONS[name.split('__')[0]])}</figcaption></figure>" for name, png in images.items())
    commits = ", ".join(sorted(set(runs["git_commit"])))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>overfitlab report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table.table {{ border-collapse: collapse; font-size: 0.9em; }}
table.table th, table.table td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9em; }}
details {{ margin-top: 2em; }}
</style></head><body>
<h1>Overfitting study report</h1>
<p>{len(runs)} runs: {runs['dataset'].nunique()} dataset(s) × {runs['model'].nunique()} architecture(s) ×
{runs['seed'].nunique()} seed(s). Accuracies in percent; "final" is the last epoch (no early stopping,
no checkpoint selection). Code version: {html.escape(commits)}.</p>
<h2>Summary</h2>
{fmt_summary(summary)}
<h2>Comparisons (final test accuracy, two-sided Mann–Whitney U)</h2>
<p>Cliff's δ = P(A &gt; B) − P(A &lt; B) over pairs of seeds. With few seeds a test cannot reach
p &lt; 0.05 at all; the note says so rather than letting a large p read as "no difference".</p>
{fmt_tests(tests)}
{fmt_noise(noise)}
{data_section}
<h2>Figures</h2>
{figs}
<h2>Per-class precision, recall and F1 (median seed, final epoch)</h2>
{scores.pivot_table(index="class", columns="model", values="f1").to_html(border=0, classes="table", float_format=lambda v: f"{v:.3f}")}
<details><summary>Precision and recall per class</summary>
{scores.to_html(index=False, border=0, classes="table", float_format=lambda v: f"{v:.3f}")}
</details>
<details><summary>Every run (provenance)</summary>
{provenance.to_html(index=False, border=0, classes="table", float_format=lambda v: f"{v:.4g}")}
</details>
</body></html>
"""


@exit_on_config_error
def report(metrics_dir: str = "reports/metrics", out_dir: str = "reports", prepared_root: str = "data/prepared") -> Path:
    import matplotlib.pyplot as plt

    metrics = Path(metrics_dir)
    require((metrics / "epochs.parquet").exists(), f"{metrics}/epochs.parquet not found: run the collect stage first")
    epochs = pd.read_parquet(metrics / "epochs.parquet")
    runs = pd.read_csv(metrics / "runs.csv")
    predictions = pd.read_parquet(metrics / "predictions.parquet")
    counts = pd.read_csv(metrics / "class_counts.csv")
    out = Path(out_dir)
    images = {}
    maps_files = sorted((metrics / "feature_maps").glob("*.npz"))
    for name, fig in figures(epochs, runs, predictions, counts, Path(prepared_root), maps_files).items():
        images[name] = _png(fig)
        plt.close(fig)
        atomic_write_bytes(out / "figures" / f"{name}.png", images[name])
    summary = summary_table(runs)
    atomic_write_text(out / "figures" / "summary.csv", summary.to_csv(index=False, float_format="%.4f"))
    tests = pairwise(final_accuracy(runs))
    atomic_write_text(out / "figures" / "comparisons.csv", tests.to_csv(index=False, float_format="%.6g"))
    scores = per_class_scores(predictions)
    atomic_write_text(out / "figures" / "per_class_scores.csv", scores.to_csv(index=False, float_format="%.6g"))
    noise = noise_table(runs) if runs["label_noise"].nunique() > 1 else None
    if noise is not None:
        atomic_write_text(out / "figures" / "label_noise.csv", noise.to_csv(index=False, float_format="%.4f"))
    data_section = image_folder_html(image_folder_metas(counts, Path(prepared_root)))
    atomic_write_text(out / "index.html", render_html(images, summary, runs, tests, scores, noise, data_section))
    print(f"report: {out / 'index.html'} ({len(images)} figures)", file=sys.stderr)
    return out / "index.html"


def main() -> None:
    report()


if __name__ == "__main__":
    main()
