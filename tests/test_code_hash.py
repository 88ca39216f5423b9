"""A run's hash covers exactly the code its numbers depend on: the numerics path and its own model
family, computed from the imports (identity.numerics_code), never the orchestration around it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import compose
from overfitlab import identity as ident
from overfitlab.imports import closure

ROOT = Path(__file__).resolve().parents[1]
MLP = ("overfitlab.training.models.mlp",)  # the parts a run of the MLP family instantiates
ORCHESTRATION = [
    "train.py",
    "lifecycle.py",
    "tracking/store.py",
    "tracking/parent_run.py",
    "tracking/run_logger.py",
    "tracking/aggregate.py",
    "tracking/ui_view.py",
    "collect.py",
    "report.py",
    "sweep.py",
    "study.py",
    "launching.py",
    "runs.py",
    "identity.py",
    "analysis/rendering.py",
]


@pytest.fixture
def src(tmp_path) -> Path:
    """A copy of src/ whose files the test may edit."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


def edit(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_numerics_never_import_orchestration():
    files = {p.relative_to(ROOT / "src/overfitlab").as_posix() for p in ident.numerics_code(MLP)}
    assert {"training/fitting.py", "data/controls.py", "data/datasets.py", "training/models/mlp.py"} <= files
    assert not files & set(ORCHESTRATION), files & set(ORCHESTRATION)
    assert "training/models/convnet.py" not in files  # only the run's own family


def test_editing_any_numerics_file_changes_the_hash(src):
    before = ident.code_hash.__wrapped__(MLP, src)
    files = ident.numerics_code(MLP, src)
    assert len(files) >= 8
    for path in files:
        original = path.read_text()
        edit(path, "_EDITED = 1")
        assert ident.code_hash.__wrapped__(MLP, src) != before, path
        path.write_text(original)
    assert ident.code_hash.__wrapped__(MLP, src) == before


def test_orchestration_edits_and_a_new_model_family_leave_the_hash_alone(src):
    before = ident.code_hash.__wrapped__(MLP, src)
    package = src / "overfitlab"
    for name in ORCHESTRATION:
        edit(package / name, 'print("a new console message")')
    (package / "training/models/resnet.py").write_text(
        "from torch import nn\n\n\nclass ResNet(nn.Module):\n    pass\n"
    )
    edit(package / "training/models/convnet.py", "_OTHER_FAMILY = 1")  # another family's edit
    assert ident.code_hash.__wrapped__(MLP, src) == before
    # docstrings, comments and formatting are not code either
    fitting = package / "training/fitting.py"
    fitting.write_text(
        fitting.read_text().replace('"""Fitting:', '"""Fitting (reworded):') + "\n# a comment\n"
    )
    assert ident.code_hash.__wrapped__(MLP, src) == before


def test_a_new_import_on_the_numerics_path_extends_the_hashed_code(src):
    package = src / "overfitlab"
    (package / "training/schedule.py").write_text("RATE = 1\n")
    assert package / "training/schedule.py" not in closure(ident.NUMERICS, src)
    edit(package / "training/fitting.py", "from .schedule import RATE  # noqa")
    assert package / "training/schedule.py" in closure(ident.NUMERICS, src)


def test_a_new_option_with_its_null_default_leaves_the_identity_unchanged(project):
    from omegaconf import OmegaConf, open_dict

    cfg = compose("train", ["model=mlp_300_100"])
    meta = {"data_version": "v"}
    before = ident.config_hash(ident.identity(cfg, meta))
    with open_dict(cfg):
        cfg.model.net.init = None  # e.g. a weight-init option whose null means "as before"
        cfg.trainer.new_speed_knob = None
    assert ident.config_hash(ident.identity(cfg, meta)) == before
    with open_dict(cfg):
        cfg.model.net.init = "keras"
    assert ident.config_hash(ident.identity(cfg, meta)) != before
    assert OmegaConf.select(cfg, "model.net.init") == "keras"
