"""MNIST and CIFAR-10 from files in their published formats, written here (never downloaded).

MNIST: the four IDX files (plain or .gz) in torchvision's ``MNIST/raw/`` layout. CIFAR-10: the
python version's ``cifar-10-batches-py/`` folder of pickled batches, written the way the official
files are (Python 2 pickles: ``str`` keys, the array bytes as Python 2 strings), so the loader is
tested on the format a user copies in, not on torchvision's md5 list. The slow tests run
prepare -> train -> collect -> report on them with the command-line entry points.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import compose, run_cli, set_params, write_idx
from overfitlab.data.datasets import load_raw
from overfitlab.errors import ConfigError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_mnist(raw_dir: Path, n_train: int = 300, n_test: int = 100, gz: bool = False) -> Path:
    """MNIST's four IDX files in torchvision's layout ``<raw_dir>/MNIST/raw/`` (plain, or .gz)."""
    directory = write_idx(raw_dir / "MNIST" / "raw", n_train, n_test, seed=1)
    if not gz:
        for packed in directory.glob("*.gz"):
            with gzip.open(packed, "rb") as src, open(packed.with_suffix(""), "wb") as dst:
                shutil.copyfileobj(src, dst)
            packed.unlink()
    return directory


class _Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING opcodes), as cPickle did for the official
    CIFAR files: read back with ``encoding="latin1"`` they are ``str`` keys and array bytes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        opcode = (
            pickle.SHORT_BINSTRING + bytes([len(obj)])
            if len(obj) < 256
            else pickle.BINSTRING + struct.pack("<i", len(obj))
        )
        self.write(opcode + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _dump(obj, path: Path, python2: bool) -> None:
    with open(path, "wb") as handle:
        (_Python2Pickler(handle, protocol=2) if python2 else pickle.Pickler(handle, protocol=2)).dump(obj)


def cifar_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 rows (red, green, blue 32 x 32 planes): noise plus a bar whose row and colour
    say the class, so that a small CNN learns something in two epochs."""
    images = rng.integers(0, 60, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, label % 3, 2 + 3 * label : 4 + 3 * label, 4:28] = 230
    return images.reshape(len(labels), 3072)


def write_cifar(raw_dir: Path, per_batch: int = 40, n_test: int = 100, python2: bool = True) -> Path:
    """``cifar-10-batches-py/``: data_batch_1..5, test_batch and batches.meta."""
    folder = raw_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    names = [(f"data_batch_{i}", per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    for name, n, title in names + [("test_batch", n_test, "testing batch 1 of 1")]:
        labels = rng.permutation(np.arange(n) % 10)
        _dump(
            {
                b"batch_label": title.encode(),
                b"labels": [int(v) for v in labels],
                b"data": cifar_images(labels, rng),
                b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            },
            folder / name,
            python2,
        )
    _dump(
        {
            b"num_cases_per_batch": per_batch,
            b"label_names": [c.encode() for c in CIFAR_CLASSES],
            b"num_vis": 3072,
        },
        folder / "batches.meta",
        python2,
    )
    return folder


def raw(project, dataset: str, *overrides: str):
    return load_raw(compose("prepare", [f"dataset={dataset}", *overrides]).dataset)


# ---------------------------------------------------------------- loading (fast)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_in_torchvision_layout_win_over_flat_fashion_files(project, tmp_path, gz):
    # The project fixture put Fashion-MNIST's files (same names, 600 + 200 images) flat in the data
    # dir; MNIST's (300 + 100) are in <data dir>/MNIST/raw/: those are MNIST.
    write_mnist(tmp_path / "raw", gz=gz)
    data = raw(project, "mnist")
    assert data.train_images.shape == (300, 1, 28, 28) and data.test_images.shape == (100, 1, 28, 28)
    assert data.class_names[:2] == ["0 - zero", "1 - one"] and data.train_labels.dtype == np.int64
    assert data.source == str(tmp_path / "raw" / "MNIST" / "raw")
    bar = data.train_images[data.train_labels == 3][:, 0, 8:10, 4:24]  # class 3: the bar on rows 8-9
    assert (bar == 220).all()


def test_fashion_mnist_loads_as_before(project, tmp_path):
    data = raw(project, "fashion_mnist")
    assert data.train_images.shape == (600, 1, 28, 28) and data.class_names[0] == "T-shirt/top"


@pytest.mark.slow
def test_damaged_or_missing_idx_files_are_one_line_errors_naming_the_file(project, tmp_path):
    directory = write_mnist(tmp_path / "raw")
    labels = directory / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte: the header says 100 bytes"):
        raw(project, "mnist")
    labels.write_bytes(b"<html>not found</html>")
    with pytest.raises(ConfigError, match="not an IDX file"):
        raw(project, "mnist")
    labels.unlink()
    result = run_cli(
        sys.executable,
        "-m",
        "overfitlab.prepare",
        "dataset=mnist",
        f"dataset.search_dirs=[{tmp_path / 'nowhere'}]",
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "nowhere" in lines[0] and "t10k-labels-idx1-ubyte" in lines[0] and "MNIST/raw/" in lines[0]


@pytest.mark.parametrize("python2", [True, False], ids=["python2-pickles", "python3-pickles"])
def test_cifar10_reads_the_python_batches_without_the_official_md5(project, tmp_path, python2):
    write_cifar(tmp_path / "raw", python2=python2)
    data = raw(project, "cifar10")
    assert data.train_images.shape == (200, 3, 32, 32) and data.test_images.shape == (100, 3, 32, 32)
    assert data.class_names == CIFAR_CLASSES and data.train_labels.dtype == np.int64
    # Each row of `data` is the red, green and blue planes, row-major: the bar of class 4 is green.
    image = data.train_images[np.flatnonzero(data.train_labels == 4)[0]]
    assert (image[1, 14:16, 4:28] == 230).all() and image[0, 14:16, 4:28].max() < 60
    # torchvision's own class refuses these files (md5 of the official ones): why they are read directly.
    import torchvision

    with pytest.raises(RuntimeError, match="corrupted"):
        torchvision.datasets.CIFAR10(root=tmp_path / "raw", train=True)


def test_cifar_problems_are_one_line_errors_naming_the_folder(project, tmp_path):
    folder = write_cifar(tmp_path / "raw")
    (folder / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="cifar-10-batches-py: data_batch_3 missing: put the whole"):
        raw(project, "cifar10")
    (folder / "data_batch_3").write_bytes(b"\x80\x02truncated")
    with pytest.raises(ConfigError, match="data_batch_3: not a CIFAR python batch"):
        raw(project, "cifar10")
    shutil.rmtree(folder)
    (tmp_path / "raw" / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(ConfigError, match="cifar-10-python.tar.gz is not extracted: run tar xzf"):
        raw(project, "cifar10")


# ---------------------------------------------------------------- end to end (slow)


def _pipeline(project: Path, dataset: str) -> str:
    """prepare -> train (the study's sweep) -> collect -> report, as a user runs them."""
    out = ""
    for args in (
        ["overfitlab.prepare", f"dataset={dataset}"],
        ["overfitlab.train", "-m", "trainer.progress_bar=false"],
        ["overfitlab.collect"],
        ["overfitlab.report"],
    ):
        result = run_cli(sys.executable, "-m", *args)
        assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
        out += result.stdout + result.stderr
    return out


@pytest.mark.slow
def test_mnist_zero_vs_one_with_the_lesson_models_end_to_end(project, tmp_path):
    write_mnist(tmp_path / "raw", n_train=400, n_test=200)
    models = ["model_a", "model_b", "model_c", "model_d"]
    set_params(
        project,
        study={"datasets": ["mnist"], "models": models, "seeds": [0]},
        prepare={"classes": [0, 1], "train_size": 60, "val_size": 20},
        train={"epochs": 5, "batch_size": 10},
    )
    out = _pipeline(project, "mnist")
    assert f"prepared mnist (from {tmp_path / 'raw' / 'MNIST' / 'raw'})" in out
    meta = json.loads((project / "data/prepared/mnist/meta.json").read_text())
    assert meta["class_names"] == ["0 - zero", "1 - one"]
    assert meta["counts"] == {"train": 60, "val": 20, "test": 40}  # the test images of classes 0 and 1
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    assert sorted(runs.model) == models and (runs.dataset == "mnist").all()
    assert runs.final_test_acc.max() > 0.9  # two classes with a bar each: learnable in 30 steps
    assert (project / "reports/index.html").stat().st_size > 10_000


@pytest.mark.slow
def test_cifar10_with_cnn_pool_dropout_end_to_end(project, tmp_path):
    write_cifar(tmp_path / "raw", per_batch=60, n_test=100)
    set_params(
        project,
        study={"datasets": ["cifar10"], "models": ["cnn_pool_dropout"], "seeds": [0]},
        prepare={"train_size": 200, "val_size": 100},
        train={"epochs": 2},
    )
    out = _pipeline(project, "cifar10")
    assert f"prepared cifar10 (from {tmp_path / 'raw' / 'cifar-10-batches-py'})" in out
    meta = json.loads((project / "data/prepared/cifar10/meta.json").read_text())
    assert meta["class_names"] == CIFAR_CLASSES and meta["in_channels"] == 3 and meta["image_size"] == 32
    done = json.loads((project / "runs/cifar10/cnn_pool_dropout/seed=0/done.json").read_text())
    assert done["epochs"] == 2 and 0 <= done["final"]["test_acc"] <= 1
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    assert list(runs.dataset) == ["cifar10"] and list(runs.model) == ["cnn_pool_dropout"]
    assert (project / "reports/index.html").stat().st_size > 10_000
