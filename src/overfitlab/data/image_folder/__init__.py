"""Image-folder datasets: folders of large fields per class -> tiles in leak-free splits.

Called by ``prepare`` for ``loader: image_folder`` (options: conf/image_folder/base.yaml). The
traps this avoids are the ones of the microscopy study this project grew from:

* leakage: tiles and rotated copies of one field in both train and test. Splits are made by
  source image (``split.by: source``) or by region of each image (``split.by: region``), before
  tiling and augmenting; a content-hash check then proves that no identical tile is in two splits;
* messy folders: 12/16-bit and float images, RGB and grey, multi-page TIFFs, EXIF rotation,
  ``.DS_Store`` / ``._*`` phantoms, notes, truncated files. Every file not used is listed with the
  reason (``skipped.csv``); only dataset-level problems stop the stage.

One module per step, in the order ``build`` runs them: ``options`` (the config checked),
``sources`` (finding the files), ``pixels`` (decoding one file), ``tiles`` (cutting it, in worker
processes), ``split`` (the split rule), ``augment`` (rotated and flipped copies), ``leakage`` (the
content-hash check).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...checks import int_value
from ...errors import ConfigError, require
from ..layout import SPLITS, extra_test_split
from .leakage import check_leaks
from .options import options, worker_count
from .sources import find_sources
from .split import assign_splits, split_arrays
from .tiles import common_channels, decode

__all__ = ["build"]


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


def build(cfg) -> tuple[dict, pd.DataFrame, list[str], dict]:
    """Arrays per split, the manifest, class names and the image-folder facts for meta.json:
    find the files, decode and tile them, split (before augmenting), augment, check for leaks."""
    dataset = cfg.dataset
    opts = options(dataset)
    int_value(cfg.prepare.split_seed, "params.yaml: prepare.split_seed")
    classes, sources, skipped = find_sources(dataset)
    frame, tiles, dropped = decode(sources, opts, worker_count(dataset.workers), skipped)
    _check_every_class_has_tiles(frame[frame.test_set.isna()], classes, skipped, dataset, opts)
    images = common_channels(tiles, dataset.color)
    extras = assign_splits(frame, classes, dataset, cfg.prepare.split_seed)
    arrays, manifest = split_arrays(
        frame, images, classes, [*SPLITS, *(extra_test_split(n) for n in extras)], opts, cfg
    )
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
