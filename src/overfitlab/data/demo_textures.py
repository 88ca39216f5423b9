"""Build the offline texture demo: real photographs bundled with scikit-image, as a messy folder.

Three classes (brick, grass, gravel), one 512x512 field each, saved the way real folders come:
an 8-bit grey PNG, a 12-bit-in-16-bit TIFF, an RGB PNG, plus a macOS ``.DS_Store`` and ``._*``
phantom, a notes file and one truncated PNG. With one field per class the split must be by region
(conf/dataset/textures.yaml). ``textures_shifted/`` is a second test set: each field's test band
(the rightmost 20 %) re-acquired darker and noisier, 12-bit data in 16-bit TIFFs (a distribution shift).

    python -m overfitlab.data.demo_textures            # -> data/raw/textures/, data/raw/textures_shifted/
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from ..files import atomic_directory

CLASSES = ("brick", "grass", "gravel")  # files shipped inside scikit-image (no download)
TEST_BAND = 0.2  # the test fraction of conf/dataset/textures.yaml's region split


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff(array: np.ndarray) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


def build(raw_dir: str | Path = "data/raw") -> tuple[Path, Path]:
    from skimage import data

    raw_dir = Path(raw_dir)
    fields = {name: getattr(data, name)() for name in CLASSES}
    with atomic_directory(raw_dir / "textures") as root:
        for name in CLASSES:
            (root / name).mkdir()
        (root / "brick" / "field.png").write_bytes(_png(fields["brick"]))
        twelve_bit = fields["grass"].astype(np.uint16) * 16
        (root / "grass" / "field.tif").write_bytes(_tiff(twelve_bit))
        rgb = np.repeat(fields["gravel"][..., None], 3, axis=2)
        (root / "gravel" / "field.png").write_bytes(_png(rgb))
        (root / "brick" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
        (root / "grass" / "._field.tif").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble phantom
        (root / "gravel" / "notes.txt").write_text("gravel field, acquired on the old camera\n")
        truncated = _png(fields["gravel"][::-1])
        (root / "gravel" / "field_2.png").write_bytes(truncated[: len(truncated) // 2])  # broken copy
    rng = np.random.default_rng(0)
    with atomic_directory(raw_dir / "textures_shifted") as root:
        for name in CLASSES:
            band = fields[name][:, round((1 - TEST_BAND) * fields[name].shape[1]) :].astype(np.float64) / 255
            shifted = 0.8 * band**1.1 + rng.normal(0, 0.02, band.shape)
            (root / name).mkdir()
            twelve_bit = np.rint(np.clip(shifted, 0, 1) * 4095).astype(np.uint16)
            (root / name / "field.tif").write_bytes(_tiff(twelve_bit))
    return raw_dir / "textures", raw_dir / "textures_shifted"


def main() -> None:
    for path in build(*sys.argv[1:2]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
