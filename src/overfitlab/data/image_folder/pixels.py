"""Decoding one image file into arrays: pages, colour channels and bit depth (to uint8).

The messy part of real folders lives here: 12/16-bit and float images, RGB and grey, multi-page
TIFFs, EXIF rotation, palette and alpha modes. Each function takes and returns (H, W, C) arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luminance, as PIL's convert("L")
TIFF = {".tif", ".tiff"}


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
