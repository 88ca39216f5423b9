"""The prepared-data layout: the files ``prepare`` writes into data/prepared/<dataset>/.

One home for the file names that ``prepare`` writes and training, collect and the report read:

* ``<split>_images.npy`` (uint8, N x C x H x W) and ``<split>_labels.npy`` (int64) for each split:
  ``train``, ``val``, ``test`` and, for image folders, one ``test@<name>`` per extra test set;
* ``manifest.csv``: one row per example (where it came from);
* ``meta.json``: class names, counts, ``data_version`` (the hash of ``versioned_files``), ...;
* ``skipped.csv``: image folders only, every file not used and why.

Imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")
EXTRA_TEST = "test@"  # an extra test set <name> of an image-folder dataset is the split test@<name>
MANIFEST = "manifest.csv"
META = "meta.json"
SKIPPED = "skipped.csv"


def extra_test_split(name: str) -> str:
    """The split of the extra test set ``name``: ``test@<name>``."""
    return f"{EXTRA_TEST}{name}"


def images_file(directory: Path, split: str) -> Path:
    return Path(directory) / f"{split}_images.npy"


def labels_file(directory: Path, split: str) -> Path:
    return Path(directory) / f"{split}_labels.npy"


def manifest_file(directory: Path) -> Path:
    return Path(directory) / MANIFEST


def meta_file(directory: Path) -> Path:
    return Path(directory) / META


def skipped_file(directory: Path) -> Path:
    return Path(directory) / SKIPPED


def versioned_files(directory: Path) -> list[Path]:
    """The files whose content ``meta.json``'s ``data_version`` hashes: every split's arrays and
    the manifest, in this order."""
    directory = Path(directory)
    return sorted(directory.glob("*.npy")) + [manifest_file(directory)]
