"""The page's last section, "The data and inside the networks": examples per class and split, the
median seed's convolution outputs for one test image, and an image folder's training tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data import layout
from .inputs import ReportInputs
from .panels import gray_or_color, mosaic, panel_grid
from .registry import section_figure

inside_figure = section_figure("inside")


@inside_figure("class_balance")
def class_balance(inputs: ReportInputs):
    """Examples per class in the prepared training, validation and test splits (the class-balance
    check)."""
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


@inside_figure("feature_maps", when=lambda inputs: not inputs.feature_maps.empty)
def feature_maps(inputs: ReportInputs):
    """What the typical (median) seed's convolutions compute from one test image (the same image as
    the first of the prediction grid): raw convolution outputs, bright = high."""
    # One figure per CNN (median seed), named by whose maps they are.
    return {
        f"{m.dataset}__{m.model}__seed={m.seed}": _one_feature_map_figure(
            m.dataset, m.model, m.seed, m.path, inputs.prepared(m.dataset)
        )
        for m in inputs.feature_maps.itertuples()
    }


SAMPLE_TILES = 8  # training tiles shown per class


@inside_figure("sample_tiles", when=lambda inputs: bool(inputs.image_folders))
def sample_tiles(inputs: ReportInputs):
    """Tiles of the prepared training split per class, before rotation: what the network is given."""
    # One panel per class, its tiles from as many different source images as possible (the source
    # study's show_batch).
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
