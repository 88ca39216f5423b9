"""Image-folder datasets: folders of large fields per class -> tiles in leak-free splits.

Called by ``prepare`` for ``loader: image_folder`` (options: conf/image_folder/base.yaml). The
traps this avoids are the ones of the microscopy study this project grew from:

* leakage: tiles and rotated copies of one field in both train and test. Splits are made by
  source image (``split.by: source``) or by region of each image (``split.by: region``), before
  tiling and augmenting; a content-hash check then proves that no identical tile is in two splits;
* messy folders: 12/16-bit and float images, RGB and grey, multi-page TIFFs, EXIF rotation,
  ``.DS_Store`` / ``._*`` phantoms, notes, truncated files. Every file not used is listed with the
  reason (``skipped.csv``); only dataset-level problems stop the stage.

Files are decoded one at a time in worker processes that return small output-size tiles, so a
folder of thousands of large fields never sits in memory; results are gathered in file order,
so the output does not depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..checks import choice, int_value, is_int, number_list, positive_int
from ..errors import ConfigError, require
from ..machine import cpu_count
from .splits import stratified_sample

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luminance, as PIL's convert("L")
FLIPS = {"horizontal": -1, "vertical": -2}  # flipped axis of a (C, H, W) tile
TIFF = {".tif", ".tiff"}


@dataclass(frozen=True)
class Source:
    """One image file of one class: ``name`` is how logs and the manifest call it."""

    path: str
    name: str
    label: int
    group: str
    test_set: str | None = None  # None: the main root (split by the split rule); else an extra test set


@dataclass
class Tiles:
    """What a worker returns for one file: tiles at output size and where each came from."""

    images: np.ndarray  # (K, C, S, S) uint8
    boxes: list = field(default_factory=list)  # (page, region, top, left, height, width)
    dropped: int = 0  # tiles dropped as background
    error: str | None = None  # why the file gave nothing


# ---------------------------------------------------------------- finding the files


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in {"Thumbs.db", "desktop.ini", "__MACOSX"}


def walk_images(directory: Path, extensions: set[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under ``directory`` (sorted, sub-folders included) and the entries left out.

    Symbolic links are followed, but a folder already visited (a link loop) is not entered again.
    """
    files, ignored, seen = [], [], set()
    stack = [directory]
    while stack:
        folder = stack.pop()
        try:
            key = (folder.stat().st_dev, folder.stat().st_ino)
            if key in seen:
                ignored.append((folder, "ignored: folder already visited (symbolic link loop)"))
                continue
            seen.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            ignored.append((folder, f"unreadable folder: {exc.strerror or exc}"))
            continue
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if _hidden(entry.name):
                ignored.append((path, "ignored: hidden or phantom file (.DS_Store, ._*, ...)"))
            elif entry.is_dir():  # follows links
                subfolders.append(path)
            elif entry.is_symlink() and not path.exists():
                ignored.append((path, "unreadable: dangling symbolic link"))
            elif path.suffix.lower() not in extensions:
                ignored.append((path, f"ignored: not an image file ({path.suffix or 'no extension'})"))
            else:
                files.append(path)
        stack.extend(reversed(subfolders))
    return sorted(files), ignored


def class_folders(root: Path, key: str) -> list[str]:
    require(
        root.is_dir(),
        f"{key}={str(root)!r} is not a folder: point it at a folder with one sub-folder per class",
    )
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not _hidden(e.name))


def find_sources(dataset) -> tuple[list[str], list[Source], list[dict]]:
    """Class names, every image file of the main root and the extra test sets, and what was left out."""
    root = Path(dataset.root)
    classes = class_folders(root, "dataset.root")
    require(
        len(classes) >= 2,
        f"dataset.root={str(root)!r} has {len(classes)} class folder(s) {classes}: "
        "a classifier needs at least two (one sub-folder per class)",
    )
    extensions = {e.lower() for e in dataset.extensions}
    pattern = re.compile(dataset.split.group_pattern) if dataset.split.group_pattern else None
    sources, skipped = [], []
    sets = [(None, root)] + [(str(n), Path(r)) for n, r in (dataset.extra_test_sets or {}).items()]
    for test_set, set_root in sets:
        prefix = f"{test_set}:" if test_set else ""
        if test_set:
            found = class_folders(set_root, f"dataset.extra_test_sets.{test_set}")
            unknown = sorted(set(found) - set(classes))
            require(
                not unknown,
                f"dataset.extra_test_sets.{test_set}: class folder(s) {unknown} are not "
                f"classes of dataset.root {classes}: rename or remove them",
            )
        for label, name in enumerate(classes):
            folder = set_root / name
            if not folder.is_dir():
                continue
            files, ignored = walk_images(folder, extensions)
            skipped += [
                {"file": prefix + p.relative_to(set_root).as_posix(), "reason": r} for p, r in ignored
            ]
            for path in files:
                inside = path.relative_to(folder).as_posix()
                match = pattern.search(inside) if pattern else None
                group = (match.group(1) if match and match.groups() else match.group(0)) if match else inside
                sources.append(
                    Source(str(path), f"{prefix}{name}/{inside}", label, f"{prefix}{name}/{group}", test_set)
                )
    return classes, sources, skipped


# ---------------------------------------------------------------- decoding one file


def _pil_pages(path: str, each: bool) -> list[np.ndarray]:
    from PIL import Image, ImageOps, ImageSequence

    pages = []
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            frame = ImageOps.exif_transpose(frame)  # the orientation the camera meant
            if frame.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                frame = frame.convert("RGBA" if "transparency" in frame.info or frame.mode == "PA" else "RGB")
            array = np.asarray(frame)
            if frame.mode in ("LA", "RGBA", "La", "RGBa"):
                array = array[..., :-1]  # alpha is not image content
            pages.append(array.astype(np.uint8) * 255 if array.dtype == bool else array)
            if not each:
                break
    return pages


def _tiff_pages(path: str, each: bool) -> list[np.ndarray]:
    import tifffile

    pages = []
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages if each else tif.pages[:1]:
            array = page.asarray()
            axes = page.axes
            if array.ndim == 3 and axes.startswith("S"):  # planar: samples first
                array = np.moveaxis(array, 0, -1)
            pages.append(array)
    return pages


def read_pages(path: str, each: bool) -> list[np.ndarray]:
    """The file's image(s) as (H, W, C) arrays in their own dtype; raises on anything undecodable."""
    pages = _tiff_pages(path, each) if Path(path).suffix.lower() in TIFF else _pil_pages(path, each)
    out = []
    for array in pages:
        array = array[..., None] if array.ndim == 2 else array
        if array.ndim != 3 or min(array.shape) < 1:
            raise ValueError(f"unsupported image shape {array.shape}")
        out.append(array)
    return out


def select_color(array: np.ndarray, mode: str, channels) -> np.ndarray:
    """keep / mono (luminance of RGB, mean otherwise) / pick listed channels; dtype kept for uint8."""
    if mode == "pick":
        missing = [c for c in channels if c >= array.shape[2]]
        if missing:
            raise ValueError(f"has {array.shape[2]} channel(s); dataset.channels asks for {list(channels)}")
        return array[..., list(channels)]
    if mode == "mono" and array.shape[2] > 1:
        weights = LUMA if array.shape[2] == 3 else np.full(array.shape[2], 1 / array.shape[2])
        mono = array.astype(np.float64) @ weights
        mono = np.rint(mono).astype(np.uint8) if array.dtype == np.uint8 else mono.astype(np.float32)
        return mono[..., None]
    return array


def to_uint8(array: np.ndarray, bit_depth) -> np.ndarray:
    """8-bit images unchanged; others (12/16-bit, float) mapped linearly to 0..255 and clipped."""
    if array.dtype == np.uint8:
        return array
    if array.size == 0:
        return np.zeros(array.shape, np.uint8)
    values = np.nan_to_num(array.astype(np.float64))
    if bit_depth.scale == "percentile":
        low, high = np.percentile(values, list(bit_depth.percentiles))
    elif bit_depth.range is not None:
        low, high = bit_depth.range
    elif np.issubdtype(array.dtype, np.integer):
        low, high = np.iinfo(array.dtype).min, np.iinfo(array.dtype).max
    else:
        low, high = 0.0, 1.0
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    return np.rint(np.clip((values - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def band_edges(length: int, bands: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Pixel range [lo, hi) of each band (fractions of ``length``); consecutive bands share edges."""
    return [(round(start * length), round(stop * length)) for start, stop in bands]


def to_uint8_by_band(array: np.ndarray, bit_depth, bands: list[tuple[float, float]], axis: str) -> np.ndarray:
    """``to_uint8`` band by band: with a region split and per-image percentiles, each band is scaled
    from its own pixels, as if it were a file of its own, so that the validation and test bands never
    shape how the training tiles look (nor the training band how the test tiles look)."""
    if array.dtype == np.uint8 or len(bands) == 1 or bit_depth.scale != "percentile":
        return to_uint8(array, bit_depth)  # one band, or an element-wise mapping: the same either way
    along = 1 if axis == "x" else 0
    parts = [
        to_uint8(np.take(array, np.arange(lo, hi), axis=along), bit_depth)
        for lo, hi in band_edges(array.shape[along], bands)
    ]
    return np.concatenate(parts, axis=along)


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


# ---------------------------------------------------------------- options and checks


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


def _workers(value) -> int:
    return cpu_count() if value is None else positive_int(value, "dataset.workers")


def tile_all(sources: list[Source], opts: dict, workers: int):
    """Tiles of every source, in source order, decoded by ``workers`` processes."""
    if workers == 1 or len(sources) < 2:
        yield from (tile_file(s, opts) for s in sources)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        yield from pool.map(tile_file, sources, [opts] * len(sources), chunksize=1)


# ---------------------------------------------------------------- splits


def assign_groups(groups: list[str], labels: list[int], fractions: list[float], seed: int) -> dict[str, int]:
    """Split index (0 train, 1 val, 2 test) per group, stratified by class: each class's groups are
    shuffled (seeded) and cut by the fractions, at least one group per split."""
    by_class: dict[int, list[str]] = {}
    for group, label in sorted(set(zip(groups, labels, strict=True))):
        by_class.setdefault(label, []).append(group)
    assignment = {}
    for label, members in sorted(by_class.items()):
        n = len(members)
        rng = np.random.default_rng([seed, label])
        order = [members[i] for i in rng.permutation(n)]
        n_val = max(1, round(fractions[1] * n))
        n_test = max(1, round(fractions[2] * n))
        n_train = n - n_val - n_test
        if n_train < 1:
            return {"too_few": label}  # type: ignore[dict-item]
        for i, group in enumerate(order):
            assignment[group] = 0 if i < n_train else 1 if i < n_train + n_val else 2
    return assignment


def rotate_reflect(images: np.ndarray, angle: float) -> np.ndarray:
    """Rotate (N, C, S, S) uint8 tiles about their centre, counter-clockwise, bilinear; the corners
    are filled by reflecting the tile itself (no black corners, no pixel from another tile)."""
    import torch
    import torch.nn.functional as F

    if angle == 0:
        return images.copy()
    x = torch.from_numpy(images).float()
    a = np.deg2rad(angle)
    theta = torch.tensor([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def augment(
    images: np.ndarray, rotations: list[float], flips: list[str]
) -> list[tuple[float, str, np.ndarray]]:
    """(rotation, flip, copies) for every angle and every flip (``none`` first)."""
    copies = []
    for angle in rotations:
        rotated = rotate_reflect(images, float(angle))
        copies.append((float(angle), "none", rotated))
        copies += [
            (float(angle), flip, np.ascontiguousarray(np.flip(rotated, FLIPS[flip]))) for flip in flips
        ]
    return copies


def content_hash(tile: np.ndarray) -> str:
    return hashlib.sha256(tile.tobytes()).hexdigest()[:16]


def leakage_check(hashes: pd.Series, splits: pd.Series) -> dict:
    """Tiles whose exact content is in more than one split (by content hash), per pair of splits."""
    frame = pd.DataFrame({"hash": hashes.to_numpy(), "split": splits.to_numpy()}).drop_duplicates()
    shared = frame[frame.duplicated("hash", keep=False)]
    pairs: dict[str, int] = {}
    for _, group in shared.groupby("hash"):
        names = sorted(group["split"])
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pairs[f"{a} & {b}"] = pairs.get(f"{a} & {b}", 0) + 1
    return {
        "examples_checked": int(len(hashes)),
        "distinct_contents": int(frame["hash"].nunique()),
        "shared_contents": int(shared["hash"].nunique()),
        "pairs": dict(sorted(pairs.items())),
    }


# ---------------------------------------------------------------- the whole dataset

SPLITS = ["train", "val", "test"]
FRAME_COLUMNS = ["source", "group", "test_set", "label", "page", "region", "top", "left", "height", "width"]
MANIFEST_COLUMNS = [
    "split",
    "source",
    "group",
    "page",
    "region",
    "top",
    "left",
    "height",
    "width",
    "rotation",
    "flip",
    "label",
    "class",
    "content_hash",
]


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


def _check_every_class_has_tiles(
    main: pd.DataFrame, classes: list[str], skipped: list[dict], dataset, opts: dict
) -> None:
    if main.empty and any(s["reason"].startswith("no tiles: no whole tile") for s in skipped):
        raise ConfigError(
            f"dataset.tiles: the tile ({opts['grid'] or opts['size']}) is larger than every "
            f"image (or region band) of {dataset.root}: use a smaller dataset.tiles.size"
        )
    for label, name in enumerate(classes):
        n_skipped = sum(s["file"].startswith(f"{name}/") for s in skipped)
        require(
            (main.label == label).any(),
            f"{Path(dataset.root) / name}: class {name!r} has no usable image ({n_skipped} entries "
            "skipped or ignored): add images, fix the files or remove the folder",
        )


def assign_splits(frame: pd.DataFrame, classes: list[str], dataset, seed: int) -> list[str]:
    """Set ``frame.split``: train/val/test by source group or region band, ``test@<name>`` for the
    extra test sets; returns the names of the extra test sets that have tiles."""
    main = frame[frame.test_set.isna()]
    if dataset.split.by == "source":
        assignment = assign_groups(
            main.group.tolist(), main.label.tolist(), list(dataset.split.fractions), seed
        )
        if "too_few" in assignment:
            label = assignment["too_few"]
            raise ConfigError(
                f"dataset.split.by=source: class {classes[label]!r} has too few source images "
                f"({main[main.label == label].group.nunique()}) for a train/val/test split "
                "by image: add images or use dataset.split.by=region"
            )
        split_index = main.group.map(assignment)
    else:
        split_index = main.region
    frame["split"] = None
    frame.loc[main.index, "split"] = split_index.map(lambda i: SPLITS[int(i)])
    extras = sorted(frame.test_set.dropna().unique())
    for name in dataset.extra_test_sets or {}:
        require(
            name in extras,
            f"dataset.extra_test_sets.{name}: no usable image in "
            f"{dataset.extra_test_sets[name]} (see the skipped files above): "
            "fix the path or the files",
        )
    extra = frame.test_set.notna()
    frame.loc[extra, "split"] = "test@" + frame.test_set[extra]
    return extras


def _cap(frame: pd.DataFrame, size, key: str, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``size`` tiles (stratified by class; whole tiles, before augmenting); null = all."""
    if size is not None:
        int_value(size, f"params.yaml: {key}", low=1, what="a positive integer or null (all tiles)")
    if size is None or size >= len(frame):
        return frame
    keep = stratified_sample(frame["label"].to_numpy(), np.arange(len(frame)), size, rng)
    return frame.iloc[keep]


def split_arrays(
    frame: pd.DataFrame, images: np.ndarray, classes: list[str], splits: list[str], opts: dict, cfg
) -> tuple[dict, pd.DataFrame]:
    """(images, labels) per split, capped, shuffled and augmented (training only, by default), and
    the manifest: one row per example, with its content hash."""
    rng = np.random.default_rng(cfg.prepare.split_seed)
    arrays, manifests = {}, []
    for split in splits:
        part = frame[frame["split"] == split]
        missing = sorted(set(classes) - {classes[i] for i in part.label})
        require(
            split not in SPLITS or not missing,
            f"dataset.split.fractions={list(cfg.dataset.split.fractions)}: split {split!r} has no "
            f"tile of class(es) {missing}: widen its fraction or use smaller tiles",
        )
        if split in SPLITS:
            part = _cap(part, cfg.prepare.get(f"{split}_size"), f"prepare.{split}_size", rng)
        part = part.iloc[rng.permutation(len(part))]  # mixed classes (the report shows the first test images)
        x = images[part.index.to_numpy()]
        augmented = split in opts["augment_splits"]
        copies = augment(x, opts["rotations"], opts["flips"]) if augmented else [(0.0, "none", x)]
        arrays[split] = (
            np.concatenate([c for _, _, c in copies]),
            np.tile(part.label.to_numpy(np.int64), len(copies)),
        )
        for angle, flip, c in copies:
            manifests.append(
                part.assign(split=split, rotation=angle, flip=flip, content_hash=[content_hash(t) for t in c])
            )
    manifest = pd.concat(manifests, ignore_index=True)
    manifest["class"] = [classes[i] for i in manifest.label]
    return arrays, manifest[MANIFEST_COLUMNS]


def check_leaks(manifest: pd.DataFrame, on_leak: str) -> dict:
    """The leakage check of the manifest; a shared tile content stops the stage (``on_leak: error``)."""
    leak = leakage_check(manifest.content_hash, manifest.split)
    if leak["shared_contents"]:
        shared = manifest[manifest.content_hash.duplicated(keep=False)]
        example = shared.drop_duplicates(["content_hash", "split"])
        detail = (
            f"{leak['shared_contents']} tile content(s) in two splits ({leak['pairs']}), "
            f"e.g. {example.source.iloc[0]}"
        )
        require(
            on_leak == "warn",
            f"dataset.on_leak=error: {detail}: remove duplicate files, set "
            "dataset.split.group_pattern, or drop flat background tiles "
            "(dataset.background.min_std)",
        )
        print(f"warning: {detail}")
    return leak


def build(cfg) -> tuple[dict, pd.DataFrame, list[str], dict]:
    """Arrays per split, the manifest, class names and the image-folder facts for meta.json:
    find the files, decode and tile them, split (before augmenting), augment, check for leaks."""
    dataset = cfg.dataset
    opts = options(dataset)
    int_value(cfg.prepare.split_seed, "params.yaml: prepare.split_seed")
    classes, sources, skipped = find_sources(dataset)
    frame, tiles, dropped = decode(sources, opts, _workers(dataset.workers), skipped)
    _check_every_class_has_tiles(frame[frame.test_set.isna()], classes, skipped, dataset, opts)
    images = _common_channels(tiles, dataset.color)
    extras = assign_splits(frame, classes, dataset, cfg.prepare.split_seed)
    arrays, manifest = split_arrays(frame, images, classes, SPLITS + [f"test@{n}" for n in extras], opts, cfg)
    facts = {
        "loader": "image_folder",
        "extra_test_sets": extras,
        "source_files": int(frame.source.nunique()),
        "skipped": sorted(skipped, key=lambda s: s["file"]),
        "background_dropped": {classes[k]: int(v) for k, v in sorted(dropped.items())},
        "leakage": check_leaks(manifest, dataset.on_leak),
        "split_by": str(dataset.split.by),
        "groups_per_split": {s: int(frame[frame["split"] == s].group.nunique()) for s in arrays},
    }
    return arrays, manifest, classes, facts


def _common_channels(tiles: list[np.ndarray], color: str) -> np.ndarray:
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
