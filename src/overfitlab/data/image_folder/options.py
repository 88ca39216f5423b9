"""The ``dataset:`` options of an image folder (conf/image_folder/base.yaml), checked and flattened.

Every bad value is a one-line error naming its key; the checked options travel to the worker
processes as one plain dict.
"""

from __future__ import annotations

import re

import numpy as np
from omegaconf import OmegaConf

from ...checks import choice, is_int, number_list, positive_int
from ...errors import ConfigError, require
from ...machine import cpu_count
from .augment import FLIPS


def _channels(dataset) -> list[int] | None:
    if dataset.color != "pick":
        return None
    channels = dataset.channels
    require(
        isinstance(channels, (list, tuple)) or OmegaConf.is_list(channels),
        f"dataset.channels={channels!r}: with color: pick list the channel indices, e.g. [1]",
    )
    channels = list(channels)
    require(
        channels and all(is_int(c) and c >= 0 for c in channels),
        f"dataset.channels={channels!r} must list channel indices (0 = first), e.g. [1]",
    )
    return channels


def _bands(split) -> list[tuple[float, float]]:
    """Train, val and test bands (fractions of the image) for a region split; one band otherwise."""
    fractions = number_list(split.fractions, "dataset.split.fractions", 3)
    require(
        all(f > 0 for f in fractions) and abs(sum(fractions) - 1) < 1e-6,
        f"dataset.split.fractions={fractions} must be three positive fractions (train, val, test) "
        "summing to 1",
    )
    choice(split.by, "dataset.split.by", ("source", "region"))
    choice(split.axis, "dataset.split.axis", ("x", "y"))
    if split.group_pattern:
        try:
            re.compile(split.group_pattern)
        except re.error as exc:
            raise ConfigError(
                f"dataset.split.group_pattern={split.group_pattern!r} is not a regular expression: {exc}"
            ) from None
    if split.by != "region":
        return [(0.0, 1.0)]
    edges = np.cumsum([0.0] + fractions)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _check_bit_depth(bit_depth) -> None:
    choice(bit_depth.scale, "dataset.bit_depth.scale", ("percentile", "fixed"))
    low, high = number_list(bit_depth.percentiles, "dataset.bit_depth.percentiles", 2)
    require(
        0 <= low < high <= 100,
        f"dataset.bit_depth.percentiles=[{low}, {high}] must be 0 <= low < high <= 100",
    )
    if bit_depth.range is not None:
        low, high = number_list(bit_depth.range, "dataset.bit_depth.range", 2)
        require(low < high, f"dataset.bit_depth.range=[{low}, {high}] must have low < high")


def options(dataset) -> dict:
    """The dataset config checked (one-line errors naming the key) and flattened for the workers."""
    d = dataset
    choice(d.pages, "dataset.pages", ("first", "each"))
    choice(d.color, "dataset.color", ("keep", "mono", "pick"))
    _check_bit_depth(d.bit_depth)
    grid = None
    if d.tiles.grid is not None:
        grid = [
            positive_int(v, "dataset.tiles.grid") for v in number_list(d.tiles.grid, "dataset.tiles.grid", 2)
        ]
    size = positive_int(d.tiles.size, "dataset.tiles.size")
    stride = size if d.tiles.stride is None else positive_int(d.tiles.stride, "dataset.tiles.stride")
    bands = _bands(d.split)
    for flip in d.augment.flips:
        choice(flip, "dataset.augment.flips", sorted(FLIPS))
    rotations = number_list(d.augment.rotations, "dataset.augment.rotations")
    require(rotations, "dataset.augment.rotations is empty: list at least 0 (the tile itself)")
    choice(d.on_leak, "dataset.on_leak", ("error", "warn"))
    background = {k: d.background[k] for k in ("min_mean", "max_mean", "min_std")}
    background["active"] = any(v is not None for v in background.values())
    return {
        "pages": d.pages,
        "color": d.color,
        "channels": _channels(d),
        "bit_depth": d.bit_depth,
        "grid": grid,
        "size": size,
        "stride": stride,
        "bands": bands,
        "axis": d.split.axis,
        "background": background,
        "image_size": positive_int(d.image_size, "dataset.image_size"),
        "rotations": rotations,
        "flips": list(d.augment.flips),
        "augment_splits": list(d.augment.splits),
    }


def worker_count(value) -> int:
    """Processes decoding the images: ``dataset.workers``, null for every core this process may use."""
    return cpu_count() if value is None else positive_int(value, "dataset.workers")
