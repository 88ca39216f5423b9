"""Study axes: any config key is an axis, every axis value gets its own run directory, and no two
jobs of a sweep ever share one (axes.py; the train stage as a user runs it)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from conftest import run_cli, set_params

TRAIN = ("python", "-m", "overfitlab.train", "--multirun", "trainer.progress_bar=false")


def train(project, *overrides: str, multirun: bool = True):
    """The train stage's entry point as a user runs it: a sweep (``-m``) or one run."""
    command = TRAIN if multirun else tuple(a for a in TRAIN if a != "--multirun")
    result = run_cli(*command, *overrides, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def done(project, pattern: str) -> dict:
    return {
        p.parent.relative_to(project / "runs").as_posix(): json.loads(p.read_text())
        for p in sorted((project / "runs").glob(pattern))
    }


@pytest.mark.slow
def test_a_command_line_sweep_of_any_key_keeps_every_run(prepared, project):
    """The bug: `train.lr=0.01,100` trained both jobs into runs/.../seed=5; the second overwrote the first."""
    train(project, "model=mlp_300_100", "optimizer=sgd", "train.lr=0.01,100", "seed=5", "train.epochs=2")
    runs = done(project, "**/done.json")
    # every key the command line sets is in the directory: neither run replaces the study's own runs
    assert sorted(runs) == [
        "fashion_mnist/mlp_300_100/lr=0.01/epochs=2/seed=5",
        "fashion_mnist/mlp_300_100/lr=100/epochs=2/seed=5",
    ]
    for key, record in runs.items():
        config = yaml.safe_load((project / "runs" / key / "config.yaml").read_text())
        assert f"lr={config['optimizer']['lr']}/" in key
        assert record["axes"] == {"train.lr": config["optimizer"]["lr"], "train.epochs": 2}
        assert record["cpu_model"]  # the machine is part of the record (not of the identity)


@pytest.mark.slow
def test_a_single_run_with_other_settings_never_replaces_a_study_run(prepared, project):
    train(project, "model=mlp_300_100", multirun=False)  # the study's run
    train(project, "model=mlp_300_100", "train.epochs=1", "trainer.threads=1", multirun=False)
    runs = done(project, "**/done.json")
    assert sorted(runs) == ["fashion_mnist/mlp_300_100/epochs=1/seed=0", "fashion_mnist/mlp_300_100/seed=0"]
    assert runs["fashion_mnist/mlp_300_100/seed=0"]["epochs"] == 2  # the study's run is still there


def test_a_sweep_over_a_config_group_is_refused_before_anything_trains(project):
    result = run_cli(*TRAIN, "optimizer=adam,sgd", "model=mlp_300_100", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "optimizer=...: a sweep over conf/optimizer/ would put its runs in one directory" in result.stderr
    assert not (project / "runs").exists()


def test_an_axis_the_model_does_not_have_is_one_line_before_anything_trains(project):
    set_params(project, study={"axes": {"model.net.width": [4, 8]}})
    result = run_cli(*TRAIN, cwd=project)
    assert result.returncode == 2
    assert "study.axes.model.net.width=4 does not apply to model mlp_300_100" in result.stderr
    assert not (project / "runs").exists()
    set_params(project, study={"axes": {"train.label_noise": [0.0, 1.5]}})
    result = run_cli(*TRAIN, cwd=project)
    assert result.returncode == 2 and "train.label_noise=1.5 must be a fraction from 0 to 1" in result.stderr
    # a width-parametrized family's capacity: a positive integer
    for bad in (0, 2.5):
        set_params(project, study={"models": ["mlp_width", "cnn5_width"], "axes": {"model.width": [4, bad]}})
        result = run_cli(*TRAIN, cwd=project)
        assert result.returncode == 2, result.stderr
        assert f"model.width={bad} must be a positive integer" in result.stderr
        assert result.stderr.strip().count("\n") == 0 and not (project / "runs").exists()


@pytest.mark.slow
def test_a_study_with_axes_trains_collects_and_reports_against_them(project):
    """study.axes on a train key and a prepare key: one prepared variant per data size, one run per
    combination, a column per axis, an against-axis figure per axis; a new value trains only its runs."""
    set_params(
        project,
        study={
            "models": ["mlp_300_100"],
            "seeds": [1],
            "axes": {"train.lr": [0.001, 0.01], "prepare.train_size": [100, 200]},
        },
    )
    assert run_cli("python", "-m", "overfitlab.prepare", "dataset=fashion_mnist", cwd=project).returncode == 0
    sizes = {
        p.parent.name: json.loads(p.read_text())["counts"]["train"]
        for p in (project / "data/prepared/fashion_mnist").glob("*/meta.json")
    }
    assert sizes == {"train_size=100": 100, "train_size=200": 200}
    train(project)
    assert len(done(project, "**/done.json")) == 4
    assert (project / "runs/fashion_mnist/mlp_300_100/lr=0.01/train_size=100/seed=1/done.json").exists()
    for stage in ("collect", "report"):
        result = run_cli("python", "-m", f"overfitlab.{stage}", cwd=project)
        assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(project / "reports/metrics/runs.csv")
    assert sorted(runs[["lr", "train_size"]].drop_duplicates().itertuples(index=False, name=None)) == [
        (0.001, 100),
        (0.001, 200),
        (0.01, 100),
        (0.01, 200),
    ]
    epochs = pd.read_parquet(project / "reports/metrics/epochs.parquet")
    assert {"lr", "train_size"} <= set(epochs.columns) and len(epochs) == 4 * 2
    against = pd.read_csv(project / "reports/figures/against_lr.csv")
    assert sorted(against["lr"]) == [0.001, 0.001, 0.01, 0.01]  # per train size
    assert (project / "reports/figures/against_axis__lr.png").exists()
    assert (project / "reports/figures/against_axis__train_size.png").exists()
    # One more value: only its runs train, the others are skipped as complete.
    set_params(project, study={"axes": {"train.lr": [0.001, 0.01, 0.1], "prepare.train_size": [100, 200]}})
    result = train(project)
    assert result.stderr.count("already trained with this config") == 4
    assert result.stderr.count("✓") == 2
