"""Shared fixtures: a throw-away copy of the project with a small real IDX dataset built here.

The dataset is written in the real IDX format (gzip) that Fashion-MNIST ships in, so the tests
exercise the real torchvision loading path; its images have class-specific structure (a bar at a
class-dependent row plus noise) so that a few epochs of training visibly learn something.
"""

from __future__ import annotations

import gzip
import os
import shutil
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
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 220
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes())
    return directory


SMALL_STUDY = {
    "study": {"name": "test-study", "datasets": ["fashion_mnist"], "models": ["mlp_300_100", "model_d"],
              "seeds": [0, 1]},
    "prepare": {"train_size": 200, "val_size": 100, "test_size": None, "classes": None, "rotations": [],
                "split_seed": 0},
    "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 0.001, "train_eval_pass": False,
              "label_noise": 0.0, "pixels": "none", "data_seed": 0},
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

    import overfitlab  # noqa: F401  (registers the `sweep` resolver)

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
