"""How a figure is laid out to fit the page: panels wrapped at ``MAX_COLUMNS`` a row and never wider
than ``MAX_WIDTH``, one figure per dataset variant (``per_variant``), one panel per group of rows
(``panels_by``: the preamble every small-multiples figure shares), images tiled into one panel."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd

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


def panels_by(
    frame: pd.DataFrame,
    by: str | list[str],
    panel: tuple[float, float],
    title: str = "",
    sort: bool = False,
    **kwargs,
):
    """One panel per value of ``by`` (a column, or several: a tuple of values) in ``frame``, in order
    of first appearance (``sort``: in sorted order): the figure (``panel_grid``, ``kwargs`` to
    ``plt.subplots``) and each panel's (axes, value, rows)."""
    columns = [by] if isinstance(by, str) else list(by)
    values = frame[columns].drop_duplicates()
    values = list((values.sort_values(columns) if sort else values).itertuples(index=False, name=None))
    fig, axes = panel_grid(len(values), panel, title, **kwargs)
    panels = []
    for ax, value in zip(axes, values, strict=True):
        rows = frame[np.logical_and.reduce([frame[c] == v for c, v in zip(columns, value, strict=True)])]
        panels.append((ax, value[0] if isinstance(by, str) else value, rows))
    return fig, panels


def per_variant(draw, frame: pd.DataFrame, *args, **kwargs):
    """``draw(rows of one variant, ...)`` for each dataset (variant) of ``frame``: one figure when
    the study has one, else ``{variant: figure}`` (the page shows each in the variant's section)."""
    variants = list(dict.fromkeys(frame["dataset"]))
    figures = {v: draw(frame[frame["dataset"] == v], *args, **kwargs) for v in variants}
    return figures if len(variants) > 1 else figures[variants[0]]


def each_variant(rows: Callable):
    """Make ``draw(rows of one variant, inputs)`` a figure of ``inputs`` drawn once per dataset
    variant of ``rows(inputs)`` (``per_variant``); its name, docstring (the caption) and module (its
    place in the page) stay."""

    def figure_of_inputs(draw: Callable):
        @functools.wraps(draw)
        def drawn_per_variant(inputs):
            return per_variant(draw, rows(inputs), inputs)

        return drawn_per_variant

    return figure_of_inputs


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
