"""Cutting files into tiles: the geometry, one file at a time in worker processes, in file order.

Each worker decodes one file and returns small output-size tiles (``Tiles``), so a folder of
thousands of large fields never sits in memory; results are gathered in file order, so the output
does not depend on the number of workers. ``decode`` turns them into one frame row per tile
(where it came from), which the split rule then reads.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import require
from .pixels import band_edges, read_pages, select_color, to_uint8_by_band
from .sources import Source

FRAME_COLUMNS = ["source", "group", "test_set", "label", "page", "region", "top", "left", "height", "width"]


@dataclass
class Tiles:
    """What a worker returns for one file: tiles at output size and where each came from."""

    images: np.ndarray  # (K, C, S, S) uint8
    boxes: list = field(default_factory=list)  # (page, region, top, left, height, width)
    dropped: int = 0  # tiles dropped as background
    error: str | None = None  # why the file gave nothing


def tile_boxes(
    height: int,
    width: int,
    size: tuple[int, int],
    stride: tuple[int, int],
    bands: list[tuple[float, float]],
    axis: str,
) -> list[tuple[int, int, int]]:
    """(region, top, left) of every whole tile; with several bands (region split) no tile crosses
    a band boundary, so no pixel of one split is in a tile of another."""
    boxes = []
    for region, (lo, hi) in enumerate(band_edges(width if axis == "x" else height, bands)):
        y_range = (0, height) if axis == "x" else (lo, hi)
        x_range = (lo, hi) if axis == "x" else (0, width)
        for top in range(y_range[0], y_range[1] - size[0] + 1, stride[0]):
            for left in range(x_range[0], x_range[1] - size[1] + 1, stride[1]):
                boxes.append((region, top, left))
    return boxes


def resize(tile: np.ndarray, size: int) -> np.ndarray:
    """(h, w, C) uint8 -> (C, size, size), bilinear with antialiasing (PIL), channel by channel."""
    from PIL import Image

    if tile.shape[:2] == (size, size):
        return np.ascontiguousarray(tile.transpose(2, 0, 1))
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(tile[..., c])).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
            for c in range(tile.shape[2])
        ]
    )


def tile_file(source: Source, opts: dict) -> Tiles:
    """Decode one file and cut it into tiles at output size. Never raises for a bad file: the
    reason comes back in ``error`` (decoders of untrusted files raise many exception types)."""
    bands = opts["bands"] if source.test_set is None else [(0.0, 1.0)]
    try:
        pages = [
            to_uint8_by_band(
                select_color(p, opts["color"], opts["channels"]), opts["bit_depth"], bands, opts["axis"]
            )
            for p in read_pages(source.path, opts["pages"] == "each")
        ]
    except Exception as exc:  # noqa: BLE001
        message = str(exc).splitlines()[0] if str(exc) else ""
        return Tiles(
            np.zeros((0, 1, 1, 1), np.uint8), error=f"unreadable: {type(exc).__name__}: {message}"[:300]
        )
    background = opts["background"]
    tiles, boxes, dropped = [], [], 0
    for index, page in enumerate(pages):
        height, width = page.shape[:2]
        if opts["grid"]:
            size = (height // opts["grid"][0], width // opts["grid"][1])
            stride = size
            if min(size) < 1:
                return Tiles(
                    np.zeros((0, 1, 1, 1), np.uint8),
                    error=f"no tiles: no whole tile fits: image "
                    f"{width}x{height} px has fewer pixels than dataset.tiles.grid={opts['grid']}",
                )
        else:
            size, stride = (opts["size"],) * 2, (opts["stride"],) * 2
        for region, top, left in tile_boxes(height, width, size, stride, bands, opts["axis"]):
            tile = page[top : top + size[0], left : left + size[1]]
            if background["active"]:
                mean, std = float(tile.mean()), float(tile.mean(axis=2).std())
                if (
                    (background["min_mean"] is not None and mean < background["min_mean"])
                    or (background["max_mean"] is not None and mean > background["max_mean"])
                    or (background["min_std"] is not None and std < background["min_std"])
                ):
                    dropped += 1
                    continue
            tiles.append(resize(tile, opts["image_size"]))
            boxes.append((index, region, top, left, size[0], size[1]))
    if not tiles:
        shapes = "x".join(map(str, pages[0].shape[1::-1]))
        reason = (
            f"all {dropped} tiles dropped as background"
            if dropped
            else f"no whole tile fits: image {shapes} px, tile {'x'.join(map(str, size[::-1]))} px"
            + (" in a region band" if len(opts["bands"]) > 1 and source.test_set is None else "")
        )
        return Tiles(np.zeros((0, 1, 1, 1), np.uint8), dropped=dropped, error=f"no tiles: {reason}")
    channels = {t.shape[0] for t in tiles}
    return Tiles(np.stack(tiles) if len(channels) == 1 else np.stack([t[:1] for t in tiles]), boxes, dropped)


def tile_all(sources: list[Source], opts: dict, workers: int):
    """Tiles of every source, in source order, decoded by ``workers`` processes."""
    if workers == 1 or len(sources) < 2:
        yield from (tile_file(s, opts) for s in sources)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        yield from pool.map(tile_file, sources, [opts] * len(sources), chunksize=1)


def decode(sources: list[Source], opts: dict, workers: int, skipped: list[dict]):
    """Every file's tiles: one frame row per tile (where it came from), the tile arrays per file,
    and background tiles dropped per class; files that gave nothing are added to ``skipped``."""
    rows, tiles, dropped = [], [], {}
    for source, result in zip(sources, tile_all(sources, opts, workers), strict=True):
        dropped[source.label] = dropped.get(source.label, 0) + result.dropped
        if result.error:
            skipped.append({"file": source.name, "reason": result.error})
            continue
        tiles.append(result.images)
        rows += [
            dict(
                zip(
                    FRAME_COLUMNS,
                    (source.name, source.group, source.test_set, source.label, *box),
                    strict=True,
                )
            )
            for box in result.boxes
        ]
    return pd.DataFrame(rows, columns=FRAME_COLUMNS), tiles, dropped


def common_channels(tiles: list[np.ndarray], color: str) -> np.ndarray:
    """One array of all tiles; with ``color: keep`` grey tiles become RGB when the folder mixes both."""
    counts = sorted({t.shape[1] for t in tiles})
    if len(counts) > 1:
        require(
            counts == [1, 3] and color == "keep",
            f"dataset.color={color}: images have {counts} channels: use color: mono, or pick channels "
            "(color: pick)",
        )
        tiles = [np.repeat(t, 3, axis=1) if t.shape[1] == 1 else t for t in tiles]
    return np.concatenate(tiles)
