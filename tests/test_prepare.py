"""Stage prepare: real IDX loading, deterministic leak-free splits, subsets, rotations, bad input."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import compose, run_cli, set_params
from overfitlab.data.datasets import load_prepared
from overfitlab.data.splits import stratified_sample
from overfitlab.prepare import prepare


def test_prepare_writes_splits_manifest_and_meta(prepared):
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["counts"] == {"train": 200, "val": 100, "test": 200}
    assert meta["in_channels"] == 1 and meta["image_size"] == 28
    assert meta["class_names"][0] == "T-shirt/top" and len(meta["class_names"]) == 10
    assert meta["class_counts"]["train"] == [20] * 10  # stratified
    manifest = pd.read_csv(prepared / "manifest.csv")
    assert len(manifest) == 500
    train_src = set(manifest.query("split == 'train'").source_index)
    val_src = set(manifest.query("split == 'val'").source_index)
    assert not train_src & val_src  # validation images are never training images
    data = load_prepared(prepared)
    assert data.images["train"].shape == (200, 1, 28, 28)
    assert 0.0 <= float(data.images["train"].min()) and float(data.images["train"].max()) <= 1.0
    # Labels in the files match the manifest row by row.
    assert (manifest.query("split == 'train'").label.to_numpy() == data.labels["train"].numpy()).all()


def test_prepare_is_byte_identical_for_same_params_and_differs_for_another_split_seed(project):
    prepare(compose("prepare", ["out_dir=a"]))
    prepare(compose("prepare", ["out_dir=b"]))
    prepare(compose("prepare", ["out_dir=c", "prepare.split_seed=1"]))
    names = sorted(p.name for p in (project / "a").iterdir())
    assert names == sorted(p.name for p in (project / "b").iterdir())
    for name in names:
        assert (project / "a" / name).read_bytes() == (project / "b" / name).read_bytes(), name
    assert (project / "a" / "manifest.csv").read_bytes() != (project / "c" / "manifest.csv").read_bytes()


def test_class_subset_relabels_and_rotations_add_training_copies(project):
    set_params(project, prepare={"classes": [3, 1], "rotations": [-5, 5], "train_size": 40, "val_size": 10})
    meta = prepare(compose("prepare"))
    assert meta["class_names"] == ["Dress", "Trouser"]
    data = load_prepared(project / "data" / "prepared" / "fashion_mnist")
    assert set(data.labels["test"].tolist()) == {0, 1}
    assert meta["counts"]["train"] == 40 * 3 and meta["counts"]["val"] == 10  # originals + 2 rotations
    manifest = pd.read_csv(project / "data" / "prepared" / "fashion_mnist" / "manifest.csv")
    train = manifest.query("split == 'train'")
    assert sorted(train.rotation.unique()) == [-5.0, 0.0, 5.0]
    assert manifest.query("split != 'train'").rotation.eq(0).all()  # never rotate val/test
    original, rotated = data.images["train"][:40], data.images["train"][40:80]
    assert not np.allclose(original.numpy(), rotated.numpy())


def test_stratified_sample_keeps_proportions():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_sample(labels, np.arange(100), 50, np.random.default_rng(0))
    assert len(idx) == 50 and len(set(idx)) == 50
    assert np.bincount(labels[idx]).tolist() == [30, 15, 5]


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,key",
    [
        ("prepare.train_size=100000", "prepare.train_size"),
        ("prepare.val_size=-1", "prepare.val_size"),  # 0 is allowed: no validation split
        ("prepare.classes=[0,42]", "prepare.classes"),
        ("prepare.classes=[4]", "prepare.classes"),
    ],
)
def test_bad_prepare_values_fail_with_one_line_and_write_nothing(project, override, key):
    result = run_cli(sys.executable, "-m", "overfitlab.prepare", override)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and key in lines[0]
    assert not (project / "data").exists() or not any((project / "data").rglob("*.npy"))


@pytest.mark.slow
def test_missing_dataset_says_how_to_get_it(project, monkeypatch, tmp_path):
    monkeypatch.setenv("OVERFITLAB_DATA_DIR", str(tmp_path / "empty"))
    result = run_cli(
        sys.executable, "-m", "overfitlab.prepare", "dataset.search_dirs=[" + str(tmp_path / "empty") + "]"
    )
    assert result.returncode == 2
    assert "dataset-fashion-mnist" in result.stderr and "not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_unknown_dataset_name_lists_the_allowed_ones(project):
    result = run_cli(sys.executable, "-m", "overfitlab.prepare", "dataset=imagenet")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "dataset='imagenet'" in result.stderr and "fashion_mnist" in result.stderr
