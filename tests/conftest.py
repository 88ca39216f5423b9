"""Shared fixtures: a throw-away copy of the project with a small real IDX dataset built here.

The dataset is written in the real IDX format (gzip) that Fashion-MNIST ships in, so the tests
exercise the real torchvision loading path; its images have class-specific structure (a bar at a
class-dependent row plus noise) so that a few epochs of training visibly learn something.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_idx(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Four gzip IDX files named as Fashion-MNIST's, with 10 learnable classes."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 220
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes())
    return directory


SMALL_STUDY = {
    "study": {
        "name": "test-study",
        "datasets": ["fashion_mnist"],
        "models": ["mlp_300_100", "model_d"],
        "seeds": [0, 1],
    },
    "prepare": {
        "train_size": 200,
        "val_size": 100,
        "test_size": None,
        "classes": None,
        "rotations": [],
        "split_seed": 0,
    },
    "train": {
        "epochs": 2,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 0.001,
        "loss": "cross_entropy",
        "train_eval_pass": False,
        "label_noise": 0.0,
        "pixels": "none",
        "data_seed": 0,
        "weight_decay": 0.0,
        "weight_decay_mode": "l2",
        "augment": "none",
        "augment_padding": 4,
        "label_smoothing": 0.0,
    },
    "launcher": "local",  # conf/hydra/launcher/ (the train stage's cmd needs it)
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of conf/, params.yaml (small study), dvc.yaml and src/ in tmp, as the working dir."""
    dest = tmp_path / "project"
    dest.mkdir()
    for item in ("conf", "src", "dvc.yaml", ".dvcignore"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, dest / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.exists():
            shutil.copy(source, dest / item)
    (dest / "params.yaml").write_text(yaml.safe_dump(SMALL_STUDY, sort_keys=False))
    write_idx(tmp_path / "raw")
    monkeypatch.setenv("OVERFITLAB_DATA_DIR", str(tmp_path / "raw"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(dest)
    return dest


def set_params(project: Path, **sections) -> None:
    """Update params.yaml sections, e.g. set_params(p, train={"epochs": 3})."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def compose(config_name: str, overrides: list[str] | None = None):
    """Compose a config from the project copy's conf/ exactly as the entry points do."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import overfitlab.resolvers  # noqa: F401  (the `sweep` resolver)

    with initialize_config_dir(version_base="1.3", config_dir=str(Path.cwd() / "conf")):
        return hydra_compose(config_name=config_name, overrides=overrides or [])


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command of the project (python -m ..., dvc ...) as a user would."""
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def prepared(project):
    from overfitlab.prepare import prepare

    prepare(compose("prepare"))
    return project / "data" / "prepared" / "fashion_mnist"


# ---- image folders (issue 3): messy class folders of large "fields", built here on the fly


def field(label: int, index: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A grey 8-bit field whose texture says its class (stripes of a class-specific period), with a
    field-specific phase and noise, so that every field and tile has its own content."""
    rng = np.random.default_rng([label, index])
    y, x = np.mgrid[:height, :width]
    period = 6 + 6 * label
    angle = 0.3 * label
    wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + rng.uniform(0, 6.3))
    return np.clip(120 + 80 * wave + rng.normal(0, 12, (height, width)), 0, 255).astype(np.uint8)


def save_image(path: Path, array: np.ndarray, **kwargs) -> Path:
    """PNG/JPEG through PIL, TIFF (any dtype, multi-page when 3-D and ``pages=True``) through tifffile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(
            path,
            array,
            photometric="rgb"
            if array.ndim == 3 and array.shape[-1] == 3 and not kwargs.get("pages")
            else "minisblack",
        )
    else:
        from PIL import Image

        Image.fromarray(array).save(path, **kwargs)
    return path


def messy_folder(
    root: Path, classes=("control", "treated"), fields: int = 4, height: int = 96, width: int = 128
) -> Path:
    """Like the microscopy study's folder: per class, fields saved as 8-bit grey PNG, 16-bit TIFF
    (12-bit data) and RGB PNG in turn, one field in a nested sub-folder, plus phantom files, notes,
    a truncated PNG, a zero-byte PNG, a text file named .png and a dangling link (each skipped)."""
    for label, name in enumerate(classes):
        folder = root / name
        for i in range(fields):
            image = field(label, i, height, width)
            target = folder / ("run2" if i == fields - 1 else "") / f"field{i}"
            if i % 3 == 0:
                save_image(target.with_suffix(".png"), image)
            elif i % 3 == 1:
                save_image(target.with_suffix(".tif"), image.astype(np.uint16) * 16)
            else:
                save_image(target.with_suffix(".png"), np.repeat(image[..., None], 3, axis=2))
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
        (folder / "._field0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(32))
        (folder / "notes.txt").write_text("acquired on Tuesday\n")
    good = (root / classes[0] / "field0.png").read_bytes()
    (root / classes[0] / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / classes[1] / "empty.png").write_bytes(b"")
    (root / classes[1] / "text.png").write_text("not an image\n")
    (root / classes[1] / "gone.png").symlink_to(root / "nowhere.png")
    (root / classes[1] / "loop").symlink_to(root / classes[1])  # a symbolic link loop
    return root


IMAGE_FOLDER_BAD = ("control/truncated.png", "treated/empty.png", "treated/text.png", "treated/gone.png")


CELLS_CONFIG = """defaults:
  - /image_folder/base@_here_
  - _self_
name: cells
root: ???
split: {by: source}
tiles: {size: 32}
image_size: 16
augment: {rotations: [-2, 0, 2]}
workers: 1
"""


def image_folder_overrides(root: Path, **extra) -> list[str]:
    """Hydra overrides selecting a `cells` image-folder dataset (written into the project copy's
    conf/dataset/) rooted at a test folder, all tiles kept (no train/val size caps)."""
    (Path.cwd() / "conf" / "dataset" / "cells.yaml").write_text(CELLS_CONFIG)
    base = {"dataset.root": str(root), "prepare.train_size": "null", "prepare.val_size": "null"}
    base.update(extra)
    return ["dataset=cells"] + [f"{k}={v}" for k, v in base.items()]


def epochs_logged(project: Path, model: str | None = None, seed: str | None = None) -> int:
    """The last epoch a RUNNING MLflow run in ``project``'s store (of ``model`` and ``seed``, when
    given) has logged; 0 before any. Read-only SQL: an MLflow client here would run the store's
    migrations while the sweep is creating it, and both would fail."""
    store = project / "mlflow.db"
    if not store.exists():
        return 0
    query = (
        "SELECT max(m.step) FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
        "WHERE r.status = 'RUNNING' AND m.key = 'train_loss'"
    )
    tags = {k: v for k, v in (("model", model), ("seed", seed)) if v is not None}
    for key in tags:
        query += f" AND EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = '{key}'"
        query += " AND t.value = ?)"
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as db:
            (last,) = db.execute(query, list(tags.values())).fetchone()
    except sqlite3.OperationalError:  # the store is being created
        return 0
    return last or 0
