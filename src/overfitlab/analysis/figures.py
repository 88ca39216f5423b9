"""The figure registry: each figure of the report declares itself, in one place, with ``@figure``.

A figure is a function of one ``ReportInputs`` (everything collect wrote, read once) that returns
a matplotlib figure, or a dict ``{key: figure}`` for one image per key (named ``<name>__<key>``).
``@figure(name, caption, when)`` registers it: the name is the PNG's file name and the image's
``alt``, the caption goes under it in the page, ``when(inputs)`` says whether the study has what
the figure shows (default: always). Figures appear in the order they are registered.

The figures register themselves when ``analysis/plots.py`` is imported; this module never imports
it (plots imports the registry from here), so whoever draws them imports plots first, as the
report stage does.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import layout
from ..errors import require
from ..runs import extra_test_sets
from . import tables

# What the report reads from collect's output directory (dvc.yaml's report deps list each).
INPUT_FILES = [
    "epochs.parquet",
    "runs.csv",
    "predictions.parquet",
    "class_counts.csv",
    "feature_maps.csv",
    "feature_maps",
    "axes.json",
    "examples.parquet",
    "example_consistency.parquet",
]


@dataclass(eq=False)  # DataFrames do not compare to a bool
class ReportInputs:
    """collect's outputs, read once, plus what figures derive from them (computed on first use)."""

    epochs: pd.DataFrame
    runs: pd.DataFrame
    predictions: pd.DataFrame
    counts: pd.DataFrame
    feature_maps: pd.DataFrame  # dataset, model, seed, path: whose conv feature maps each file holds
    prepared_root: Path
    diverged: pd.DataFrame  # runs whose loss became NaN/inf: listed, left out of every statistic
    axes: dict = field(default_factory=dict)  # the study's axes: column in runs.csv -> config key
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)  # run x training example (examples.py)
    example_consistency: pd.DataFrame = field(default_factory=pd.DataFrame)  # model x example, over seeds

    @classmethod
    def load(cls, metrics_dir: Path, prepared_root: Path) -> ReportInputs:
        for name in INPUT_FILES:
            path = metrics_dir / name
            require(path.exists(), f"{path} not found: run the collect stage first")
        maps = pd.read_csv(metrics_dir / "feature_maps.csv")
        maps["path"] = [metrics_dir / "feature_maps" / name for name in maps.pop("file")]
        runs = pd.read_csv(metrics_dir / "runs.csv")
        complete = (
            runs["status"].fillna("complete") == "complete" if "status" in runs else runs["seed"].notna()
        )
        return cls(
            epochs=pd.read_parquet(metrics_dir / "epochs.parquet"),
            runs=runs[complete].reset_index(drop=True),
            diverged=runs[~complete].reset_index(drop=True),
            predictions=pd.read_parquet(metrics_dir / "predictions.parquet"),
            counts=pd.read_csv(metrics_dir / "class_counts.csv"),
            feature_maps=maps,
            prepared_root=prepared_root,
            axes=json.loads((metrics_dir / "axes.json").read_text()),
            examples=pd.read_parquet(metrics_dir / "examples.parquet"),
            example_consistency=pd.read_parquet(metrics_dir / "example_consistency.parquet"),
        )

    @cached_property
    def extra_test_sets(self) -> list[str]:
        """Extra test sets of image-folder datasets (``test_acc/<name>`` columns)."""
        return extra_test_sets(self.epochs.columns)

    @cached_property
    def class_order(self) -> dict[str, list[str]]:
        return tables.class_order(self.counts, self.predictions)

    @cached_property
    def n_test(self) -> dict[str, int]:
        """Test examples per dataset (variant): the finite evaluation behind each accuracy."""
        test = self.counts[self.counts["split"] == "test"]
        return test.groupby("dataset")["count"].sum().astype(int).to_dict()

    @cached_property
    def n_classes(self) -> dict[str, int]:
        return self.counts.groupby("dataset")["class"].nunique().to_dict()

    @cached_property
    def prepared_dirs(self) -> dict[str, Path]:
        """The prepared data directory of each dataset (variant) of the tables (runs.csv's ``prepared``)."""
        runs = pd.concat([self.runs, self.diverged], ignore_index=True)
        if "prepared" not in runs:
            return {}
        return {d: Path(p) for d, p in runs.drop_duplicates("dataset")[["dataset", "prepared"]].values}

    def prepared(self, dataset: str) -> Path:
        """The prepared data directory of a dataset (variant) of the tables."""
        return self.prepared_dirs.get(dataset, self.prepared_root / dataset)

    @cached_property
    def image_folders(self) -> dict[str, dict]:
        """meta.json of each image-folder dataset of the study (skipped files, leakage check, ...)."""
        metas = {}
        for dataset in dict.fromkeys(self.counts["dataset"]):
            meta_file = layout.meta_file(self.prepared(dataset))
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
            if meta.get("loader") == "image_folder":
                metas[dataset] = meta
        return metas

    @property
    def varying_axes(self) -> list[str]:
        """The study's axes (their runs.csv columns) with more than one value."""
        return [c for c in self.axes if c in self.runs and self.runs[c].nunique(dropna=False) > 1]


def always(inputs: ReportInputs) -> bool:
    return True


# Where a figure goes in the page, in page order: the study's question against its axes first, then
# the comparison of architectures, the curves of each variant (one collapsible section per variant
# when there are several), and what the data and the networks look like.
SECTIONS = {
    "question": "The study's question: against each axis",
    "double_descent": "Double descent: error against capacity, training time and data size",
    "comparison": "Comparing the architectures",
    "variant": "Learning curves and predictions",
    "memorization": "Which training examples were learned late, forgotten, memorized",
    "inside": "The data and inside the networks",
}


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    draw: Callable[[ReportInputs], object]
    when: Callable[[ReportInputs], bool] = always
    section: str = "comparison"


REGISTRY: dict[str, Figure] = {}


def figure(
    name: str, caption: str, when: Callable[[ReportInputs], bool] = always, section: str = "comparison"
):
    """Register the decorated function as the figure ``name`` (see the module docstring); ``section``
    is where the page shows it (``SECTIONS``)."""
    if section not in SECTIONS:
        raise ValueError(f"figure {name!r}: section {section!r} is not one of {list(SECTIONS)}")

    def register(draw: Callable[[ReportInputs], object]):
        if name in REGISTRY:
            raise ValueError(f"figure {name!r} is registered twice")
        REGISTRY[name] = Figure(name, caption, draw, when, section)
        return draw

    return register


# Every figure fits the page: small multiples wrap at MAX_COLUMNS panels a row, and no figure is
# wider than MAX_WIDTH inches (MAX_WIDTH * DPI pixels), so that shown at the page's width (1400 px)
# its labels stay readable; tests/test_report_layout.py checks every registered figure.
MAX_COLUMNS = 4
MAX_WIDTH = 14.0
DPI = 110


def panel_grid(n: int, panel: tuple[float, float] = (3.4, 2.9), title: str = "", **kwargs):
    """A figure of ``n`` panels of at least ``panel`` inches, wrapped at ``MAX_COLUMNS`` a row (fewer
    when wider panels would exceed ``MAX_WIDTH``), with constrained layout (titles never overlap).
    Returns the figure and its ``n`` axes; unused grid cells are removed."""
    import matplotlib.pyplot as plt

    width = min(panel[0], MAX_WIDTH)
    columns = max(1, min(MAX_COLUMNS, n, int(MAX_WIDTH // width)))
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(width * columns, panel[1] * rows),
        squeeze=False,
        layout="constrained",
        **kwargs,
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return fig, flat[:n]


def per_variant(draw, frame: pd.DataFrame, *args, **kwargs):
    """``draw(rows of one variant, ...)`` for each dataset (variant) of ``frame``: one figure when
    the study has one, else ``{variant: figure}`` (the page shows each in the variant's section)."""
    variants = list(dict.fromkeys(frame["dataset"]))
    figures = {v: draw(frame[frame["dataset"] == v], *args, **kwargs) for v in variants}
    return figures if len(variants) > 1 else figures[variants[0]]


def mosaic(images: list[np.ndarray], columns: int = 4, gap: int = 2) -> tuple[np.ndarray, list[tuple]]:
    """Images (H, W, C, same size) tiled ``columns`` a row on a white ground: one panel shows many
    small images. Returns the mosaic and each image's (top, left) corner."""
    h, w, c = images[0].shape
    rows = -(-len(images) // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, c), 255, dtype=np.float32)
    corners = []
    for i, image in enumerate(images):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        out[top : top + h, left : left + w] = image
        corners.append((top, left))
    return out, corners


def gray_or_color(image: np.ndarray) -> str | None:
    """The colour map for an (H, W, C) image: gray for one channel, none (RGB) for three."""
    return "gray" if image.shape[2] == 1 else None


@dataclass(frozen=True)
class Rendered:
    name: str  # the PNG's file name without .png; <figure>__<key> for one image per key
    caption: str
    png: bytes
    section: str = "comparison"
    key: str | None = None  # the variant (or CNN) of a figure drawn once per key


def png(fig) -> bytes:
    """The figure as a PNG with a 256-colour palette: about a third of the bytes of full colour for
    these plots, so the one-file page opens quickly; the plots' few colours survive it."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    small = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(small, format="PNG", optimize=True)
    return small.getvalue()


def render(inputs: ReportInputs) -> list[Rendered]:
    """Every registered figure whose ``when`` holds, drawn and encoded as PNG, in registry order
    (import ``analysis.plots`` first: it registers the report's figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rendered = []
    for spec in REGISTRY.values():
        if not spec.when(inputs):
            continue
        np.random.seed(0)  # seaborn's strip-plot jitter draws from numpy's global generator
        drawn = spec.draw(inputs)
        for key, fig in drawn.items() if isinstance(drawn, dict) else [(None, drawn)]:
            name = spec.name if key is None else f"{spec.name}__{key}"
            rendered.append(Rendered(name, spec.caption, png(fig), spec.section, key))
            plt.close(fig)
    return rendered
