"""Datasets: find and load the raw images, and read the splits ``prepare`` wrote.

Raw images are returned as uint8 arrays shaped (N, C, H, W) with int64 labels; the prepared
splits written by ``prepare`` use the same layout in ``.npy`` files.

The files are read here in their published formats (the format is the contract), not through
torchvision's dataset classes, which only download: MNIST-family IDX files (plain or .gz, flat or
in torchvision's ``<Class>/raw/``) and CIFAR's python pickle batches. torchvision's CIFAR class
also insists on the md5 sums of the official files, so a re-packed or converted copy (or a test
file) would be refused for no reason that matters to the numbers.
"""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, require
from . import layout
from .layout import SPLITS

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass
class RawDataset:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    source: str = ""  # where the files were read from (for the console)


# ---------------------------------------------------------------- MNIST family: IDX files


def _find_idx_dir(directory: Path, class_name: str) -> Path | None:
    """A directory holding the four IDX files (plain or .gz): torchvision's ``<Class>/raw/`` first, then
    ``<Class>/``, then ``directory`` itself. The dataset's own sub-folder wins, so that MNIST files in
    ``data/raw/MNIST/raw/`` are found even where Fashion-MNIST's lie flat in ``data/raw/``."""
    for candidate in (directory / class_name / "raw", directory / class_name, directory):
        if all((candidate / f).exists() or (candidate / f"{f}.gz").exists() for f in MNIST_FILES):
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format): magic 0x0000 08 <ndim>, big-endian sizes, data."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}): replace it with the original file") from None
    ndim = data[3] if len(data) >= 4 else 0
    header = 4 + 4 * ndim
    if len(data) < header or data[:3] != b"\x00\x00\x08" or ndim < 1:
        raise ConfigError(
            f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex() or 'missing'}, "
            "expected 000008xx): replace it with the original file"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    require(
        len(data) - header == int(np.prod(shape)),
        f"{path}: the header says {'x'.join(map(str, shape))} bytes of data, the file has "
        f"{len(data) - header}: the file is truncated or damaged; replace it with the original file",
    )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _idx_split(directory: Path, prefix: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels of one split (``train`` or ``t10k``)."""

    def read(name: str) -> np.ndarray:
        plain = directory / name
        return read_idx(plain if plain.exists() else directory / f"{name}.gz")

    images, labels = read(f"{prefix}-images-idx3-ubyte"), read(f"{prefix}-labels-idx1-ubyte")
    require(
        images.ndim == 3 and labels.ndim == 1 and len(images) == len(labels),
        f"{directory}: {prefix}-images holds {images.shape}, {prefix}-labels {labels.shape}: "
        "expected N images of H x W and N labels; are the files of one dataset?",
    )
    require(
        int(labels.max(initial=0)) < n_classes,
        f"{directory}/{prefix}-labels-idx1-ubyte has label {int(labels.max())}; this dataset has "
        f"{n_classes} classes",
    )
    return images[:, None].copy(), labels.astype(np.int64)


def _load_mnist_family(cls, dataset_cfg) -> RawDataset:
    name, dirs = cls.__name__, [Path(d) for d in dataset_cfg.search_dirs]
    found = next((f for f in (_find_idx_dir(d, name) for d in dirs) if f is not None), None)
    if found is None and dataset_cfg.download:
        cls(root=dirs[0], train=True, download=True)  # fetches all four files into <dir>/<Class>/raw/
        found = _find_idx_dir(dirs[0], name)
    if found is None:
        raise ConfigError(
            f"dataset {dataset_cfg.name!r}: IDX files not found in "
            f"{[str(d) for d in dirs]} (looked for {', '.join(MNIST_FILES)}, .gz or not, "
            f"in <dir>/{name}/raw/, <dir>/{name}/ or <dir>/); {dataset_cfg.install_hint}"
        )
    classes = list(cls.classes)
    train_x, train_y = _idx_split(found, "train", len(classes))
    test_x, test_y = _idx_split(found, "t10k", len(classes))
    return RawDataset(train_x, train_y, test_x, test_y, classes, source=str(found))


# ---------------------------------------------------------------- CIFAR: python pickle batches


def _unpickle(path: Path) -> dict:
    """One pickled dict of the CIFAR python version, keys as str (the official files are Python 2
    pickles: str keys with ``latin1``; files written by Python 3 have bytes keys)."""
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")  # noqa: S301 (the format is pickle)
    except Exception as exc:  # noqa: BLE001  (unpickling a damaged file raises many types)
        raise ConfigError(
            f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc}): replace it with "
            "the file from the extracted archive"
        ) from None
    require(isinstance(entry, dict), f"{path}: holds a {type(entry).__name__}, not a CIFAR batch dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _cifar_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels of one batch: ``data`` is (N, 3072) uint8, each row the red,
    green and blue 32 x 32 planes; ``labels`` (CIFAR-100: ``fine_labels``) one int per row."""
    entry = _unpickle(path)
    key = "labels" if "labels" in entry else "fine_labels"
    require(
        "data" in entry and key in entry,
        f"{path}: has keys {sorted(entry)}, a CIFAR batch has 'data' and 'labels' (CIFAR-100: 'fine_labels')",
    )
    data, labels = np.asarray(entry["data"]), np.asarray(entry[key], np.int64)
    require(
        data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
        and len(labels) == len(data),
        f"{path}: 'data' is {data.dtype} {data.shape} with {len(labels)} labels; a CIFAR batch has "
        "uint8 (N, 3072) and N labels",
    )
    require(
        len(labels) == 0 or 0 <= labels.min() <= labels.max() < n_classes,
        f"{path}: labels outside 0..{n_classes - 1}",
    )
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar(cls, folder: Path) -> RawDataset:
    """All batches of an extracted ``cifar-10-batches-py`` (or ``cifar-100-python``) folder."""
    meta_file = cls.meta["filename"]
    expected = [n for n, _ in cls.train_list + cls.test_list] + [meta_file]
    missing = [n for n in expected if not (folder / n).is_file()]
    require(
        not missing,
        f"{folder}: {', '.join(missing)} missing: put the whole extracted "
        f"{cls.base_folder} folder there ({', '.join(expected)})",
    )
    names = _unpickle(folder / meta_file).get(cls.meta["key"])
    require(
        isinstance(names, (list, tuple)) and len(names) >= 2,
        f"{folder / meta_file}: no class names under {cls.meta['key']!r}",
    )
    names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]

    def read(files) -> tuple[np.ndarray, np.ndarray]:
        batches = [_cifar_batch(folder / n, len(names)) for n, _ in files]
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])

    (train_x, train_y), (test_x, test_y) = read(cls.train_list), read(cls.test_list)
    return RawDataset(train_x, train_y, test_x, test_y, names, source=str(folder))


def _load_cifar(cls, dataset_cfg) -> RawDataset:
    dirs = [Path(d) for d in dataset_cfg.search_dirs]
    for directory in dirs:
        if (directory / cls.base_folder).is_dir():
            return _read_cifar(cls, directory / cls.base_folder)
    if dataset_cfg.download:
        cls(root=dirs[0], train=True, download=True)  # downloads, checks and extracts the archive
        return _read_cifar(cls, dirs[0] / cls.base_folder)
    for archive in (d / cls.filename for d in dirs):
        require(
            not archive.is_file(),
            f"dataset {dataset_cfg.name!r}: {archive} is not extracted: "
            f"run tar xzf {archive} -C {archive.parent}",
        )
    raise ConfigError(
        f"dataset {dataset_cfg.name!r}: {cls.base_folder}/ not found in "
        f"{[str(d) for d in dirs]}; {dataset_cfg.install_hint}"
    )


def load_raw(dataset_cfg) -> RawDataset:
    """Load a dataset from local files in its published format (downloading only with ``download: true``)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset_cfg.torchvision_class, None)
    if cls is None:
        raise ConfigError(
            f"dataset.torchvision_class={dataset_cfg.torchvision_class!r} is not a torchvision dataset"
        )
    if issubclass(cls, tvd.MNIST) and cls is not tvd.EMNIST:  # EMNIST's files have other names and splits
        return _load_mnist_family(cls, dataset_cfg)
    if issubclass(cls, tvd.CIFAR10):
        return _load_cifar(cls, dataset_cfg)
    raise ConfigError(
        f"dataset.torchvision_class={dataset_cfg.torchvision_class!r} is not supported; "
        "use FashionMNIST, MNIST, KMNIST, CIFAR10 or CIFAR100"
    )


@dataclass
class PreparedDataset:
    """The splits written by ``prepare``, as tensors, plus what the models need to adapt."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    meta: dict

    def to(self, device: torch.device | str) -> PreparedDataset:
        """The same splits on ``device`` (a GPU): batches are then sliced there, with no copy per step."""
        return PreparedDataset(
            {k: v.to(device) for k, v in self.images.items()},
            {k: v.to(device) for k, v in self.labels.items()},
            self.meta,
        )

    @property
    def in_channels(self) -> int:
        return int(self.meta["in_channels"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])


def load_prepared(directory: str | Path) -> PreparedDataset:
    directory = Path(directory)
    meta_file = layout.meta_file(directory)
    if not meta_file.exists():
        raise ConfigError(f"{meta_file} not found: run the prepare stage first (dvc repro prepare)")
    meta = json.loads(meta_file.read_text())
    images, labels = {}, {}
    # Extra test sets of image-folder datasets are splits test@<name> (see data/image_folder/).
    for split in SPLITS + tuple(layout.extra_test_split(name) for name in meta.get("extra_test_sets", [])):
        # uint8 -> float in [0, 1] once, up front: batches are then plain tensor slices.
        images[split] = torch.from_numpy(np.load(layout.images_file(directory, split))).float().div_(255.0)
        labels[split] = torch.from_numpy(np.load(layout.labels_file(directory, split)))
    return PreparedDataset(images, labels, meta)
