"""Datasets: find and load the raw images (torchvision), and read the splits ``prepare`` wrote.

Raw images are returned as uint8 arrays shaped (N, C, H, W) with int64 labels; the prepared
splits written by ``prepare`` use the same layout in ``.npy`` files.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

SPLITS = ("train", "val", "test")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class RawDataset:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def _find_idx_dir(directory: Path, class_name: str) -> Path | None:
    """A directory holding the four IDX files (plain or .gz), flat or torchvision-style."""
    for candidate in (directory, directory / class_name / "raw"):
        if all((candidate / f).exists() or (candidate / f"{f}.gz").exists() for f in MNIST_FILES):
            return candidate
    return None


def _mnist_arrays(cls, root, download: bool) -> RawDataset:
    train = cls(root=root, train=True, download=download)
    test = cls(root=root, train=False, download=download)
    return RawDataset(train.data.numpy()[:, None], train.targets.numpy().astype(np.int64),
                      test.data.numpy()[:, None], test.targets.numpy().astype(np.int64), list(train.classes))


def _load_mnist_family(cls, dataset_cfg) -> RawDataset:
    """torchvision reads uncompressed IDX files from <root>/<Class>/raw/; stage them there."""
    name = cls.__name__
    for directory in map(Path, dataset_cfg.search_dirs):
        found = _find_idx_dir(directory, name)
        if found is None:
            continue
        with tempfile.TemporaryDirectory(prefix="overfitlab-raw-") as root:
            raw = Path(root) / name / "raw"
            raw.mkdir(parents=True)
            for f in MNIST_FILES:
                if (found / f).exists():
                    shutil.copyfile(found / f, raw / f)
                else:
                    with gzip.open(found / f"{f}.gz", "rb") as src, open(raw / f, "wb") as dst:
                        shutil.copyfileobj(src, dst)
            return _mnist_arrays(cls, root, download=False)
    if dataset_cfg.download:
        return _mnist_arrays(cls, Path(dataset_cfg.search_dirs[0]), download=True)
    raise ConfigError(f"dataset {dataset_cfg.name!r}: IDX files not found in "
                      f"{list(dataset_cfg.search_dirs)}; {dataset_cfg.install_hint}")


def _load_cifar(cls, dataset_cfg) -> RawDataset:
    for directory in map(Path, dataset_cfg.search_dirs):
        if (directory / cls.base_folder).is_dir() or dataset_cfg.download:
            train = cls(root=directory, train=True, download=bool(dataset_cfg.download))
            test = cls(root=directory, train=False, download=bool(dataset_cfg.download))
            return RawDataset(train.data.transpose(0, 3, 1, 2).copy(), np.asarray(train.targets, np.int64),
                              test.data.transpose(0, 3, 1, 2).copy(), np.asarray(test.targets, np.int64),
                              list(train.classes))
    raise ConfigError(f"dataset {dataset_cfg.name!r}: {cls.base_folder}/ not found in "
                      f"{list(dataset_cfg.search_dirs)}; {dataset_cfg.install_hint}")


def load_raw(dataset_cfg) -> RawDataset:
    """Load a torchvision dataset from local files (downloading only when ``download: true``)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset_cfg.torchvision_class, None)
    if cls is None:
        raise ConfigError(f"dataset.torchvision_class={dataset_cfg.torchvision_class!r} is not a torchvision dataset")
    if issubclass(cls, tvd.MNIST):
        return _load_mnist_family(cls, dataset_cfg)
    if issubclass(cls, tvd.CIFAR10):
        return _load_cifar(cls, dataset_cfg)
    raise ConfigError(f"dataset.torchvision_class={dataset_cfg.torchvision_class!r} is not supported; "
                      "use FashionMNIST, MNIST, KMNIST, EMNIST, CIFAR10 or CIFAR100")


@dataclass
class PreparedDataset:
    """The splits written by ``prepare``, as tensors, plus what the models need to adapt."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    meta: dict

    def to(self, device: torch.device | str) -> "PreparedDataset":
        """The same splits on ``device`` (a GPU): batches are then sliced there, with no copy per step."""
        return PreparedDataset({k: v.to(device) for k, v in self.images.items()},
                               {k: v.to(device) for k, v in self.labels.items()}, self.meta)

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
    meta_file = directory / "meta.json"
    if not meta_file.exists():
        raise ConfigError(f"{meta_file} not found: run the prepare stage first (dvc repro prepare)")
    meta = json.loads(meta_file.read_text())
    images, labels = {}, {}
    # Extra test sets of image-folder datasets are splits test@<name> (see image_folder.py).
    for split in SPLITS + tuple(f"test@{name}" for name in meta.get("extra_test_sets", [])):
        # uint8 -> float in [0, 1] once, up front: batches are then plain tensor slices.
        images[split] = torch.from_numpy(np.load(directory / f"{split}_images.npy")).float().div_(255.0)
        labels[split] = torch.from_numpy(np.load(directory / f"{split}_labels.npy"))
    return PreparedDataset(images, labels, meta)
