"""Nothing wrong is recorded as right (issue 30): keys nothing reads are refused, booleans are
checked, a failed single run exits non-zero, and a command line that replaces a study axis says so.
Each case ran to a wrong success on the code before these checks."""

from __future__ import annotations

import sys

import pytest
import yaml

from conftest import run_cli

PY = sys.executable


def train(*args: str):
    return run_cli(PY, "-m", "overfitlab.train", "trainer.progress_bar=false", *args)


@pytest.mark.parametrize(
    "arg, message",
    [
        (
            "+train.lrr=0.1",
            "command line: train.lrr is not read by anything (conf/ uses no such key); did you mean train.lr",
        ),
        ("+train.wieght_decay=0.1", "did you mean train.weight_decay?"),
        ("+trainer.patience=3", "command line: +trainer.patience adds a key nothing reads"),
    ],
)
def test_a_key_nothing_reads_is_one_line_before_anything_trains(prepared, project, arg, message):
    result = train(arg)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (project / "runs").exists()


def test_an_unread_key_in_params_yaml_is_refused(prepared, project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = train()
    assert result.returncode == 2
    assert "params.yaml: train.learning_rate is not read by anything" in result.stderr


@pytest.mark.parametrize(
    "arg", ["trainer.checkpoint=maybe", "trainer.checkpoint=off", "trainer.keep_checkpoint=yes"]
)
def test_a_boolean_setting_takes_only_true_or_false(prepared, project, arg):
    result = train(arg)
    key, value = arg.split("=")
    assert result.returncode == 2
    assert f"error: {key}='{value}'; allowed: true, false" in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_a_failed_single_run_exits_non_zero(prepared, project):
    result = train("trainer.accelerator=gpu")  # no GPU here: Lightning refuses it when training starts
    assert result.returncode == 1, result.stderr[-2000:]
    assert "failed:" in result.stderr


@pytest.mark.slow
def test_a_command_line_value_that_replaces_a_study_axis_is_said(prepared, project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["study"]["models"] = ["mlp_300_100"]
    params["study"]["seeds"] = [0]
    params["study"]["axes"] = {"train.lr": [0.001, 0.01]}
    params["train"]["epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run_cli(PY, "-m", "overfitlab.train", "-m", "trainer.progress_bar=false", "train.lr=0.1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "note: the command line's train.lr replaces the study axis train.lr: [0.001, 0.01]" in result.stderr
    )
