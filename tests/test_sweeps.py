"""Sweeps beyond one process, and sweeps that survive their failed runs (issue 13).

Each test runs the real train stage (`python -m overfitlab.train -m ...`) through a real Hydra
launcher on the small IDX dataset of conftest.py and checks the run directories and the MLflow
store (SQLite at the project copy's root) as a user would find them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow
PY = sys.executable


def mlflow_runs(project: Path, experiment: str = "test-study"):
    """(parent runs, child runs) of the study's experiment, newest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if r.data.tags.get("overfitlab.kind") == "sweep"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def run_dir(project: Path, model: str, seed: int) -> Path:
    """The run's directory, below any axis parts the command line's overrides add (epochs=2/...)."""
    found = sorted((project / "runs/fashion_mnist" / model).glob(f"**/seed={seed}"))
    return found[0] if found else project / "runs/fashion_mnist" / model / f"seed={seed}"


def done(project: Path, model: str, seed: int) -> dict | None:
    path = run_dir(project, model, seed) / "done.json"
    return json.loads(path.read_text()) if path.exists() else None


def train(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_cli(
        PY, "-m", "overfitlab.train", "-m", "trainer.progress_bar=false", *overrides, timeout=timeout
    )


def test_joblib_sweep_with_two_workers_trains_every_run_under_one_parent(prepared, project):
    result = train(
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=mlp_300_100,model_d",
        "seed=0,1",
        "train.epochs=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for model in ("mlp_300_100", "model_d"):
        for seed in (0, 1):
            record = done(project, model, seed)
            assert record is not None and record["epochs"] == 2
            assert record["device"] == "cpu (1 threads)"  # 2 workers on 2 cores: one thread each
    client, parents, children = mlflow_runs(project)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # nothing lost to the two writers: every epoch of every metric
        assert [m.step for m in client.get_metric_history(child.info.run_id, "test_acc")] == [1, 2]
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")] == [1, 2]


BROKEN_MODEL = """name: broken
net:
  _target_: overfitlab.training.models.mlp.MLP
  hidden: [-5]      # a negative layer width: building the net raises
  activation: relu
"""


def test_diverged_and_failed_runs_do_not_stop_the_sweep(prepared, project):
    (project / "conf/model/broken.yaml").write_text(BROKEN_MODEL)
    # SGD at lr 100 makes the MLP's loss overflow to NaN in its first epoch; model_a (sigmoid) survives.
    args = ("model=mlp_300_100,broken,model_a", "optimizer=sgd", "train.lr=100", "seed=0", "train.epochs=2")
    result = train(*args)
    assert result.returncode == 1, result.stderr[-3000:]
    last = [line for line in result.stderr.splitlines() if line.startswith("error:")][-1]
    assert "1 run(s) failed" in last and "broken lr=100 epochs=2 seed=0" in last
    diverged, ok = done(project, "mlp_300_100", 0), done(project, "model_a", 0)
    assert diverged["status"] == "diverged" and diverged["diverged_epoch"] == 1 and diverged["final"] == {}
    assert ok["epochs"] == 2 and "status" not in ok
    broken_dir = run_dir(project, "broken", 0)
    assert done(project, "broken", 0) is None and (broken_dir / "failed.json").exists()
    assert "failed.json" in result.stderr

    client, parents, children = mlflow_runs(project)
    assert [p.info.status for p in parents] == ["FAILED"]
    status = {c.data.tags["model"]: c for c in children}
    assert status["mlp_300_100"].info.status == "FAILED" and "diverged" in status["mlp_300_100"].data.tags
    assert status["broken"].info.status == "FAILED" and "diverged" not in status["broken"].data.tags
    assert status["model_a"].info.status == "FINISHED"

    # Fixed, the same sweep retrains only the failed run; the diverged one is a final state.
    (project / "conf/model/broken.yaml").write_text(BROKEN_MODEL.replace("[-5]", "[8]"))
    again = train(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already trained") == 2
    assert done(project, "broken", 0)["epochs"] == 2
    _, parents, _ = mlflow_runs(project)
    assert sorted(p.info.status for p in parents) == ["FAILED", "FINISHED"]


def test_a_sweep_killed_mid_run_leaves_its_parent_killed_at_the_next_start(prepared, project):
    process = subprocess.Popen(
        [
            PY,
            "-m",
            "overfitlab.train",
            "-m",
            "trainer.progress_bar=false",
            "model=mlp_300_100",
            "seed=0,1",
            "train.epochs=40",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        # Killed once seed 0 is done and seed 1 is training (its MLflow child run exists).
        while not (run_dir(project, "mlp_300_100", 1).exists() and len(mlflow_runs(project)[2]) == 2):
            assert process.poll() is None and time.time() < deadline, "the sweep ended before the kill"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _, parents, _ = mlflow_runs(project)
    assert [p.info.status for p in parents] == ["RUNNING"]  # nobody could close it
    result = train("model=mlp_300_100", "seed=0,1", "train.epochs=40")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("already trained") == 1  # seed 0 kept, seed 1 trained
    _, parents, children = mlflow_runs(project)
    assert sorted(p.info.status for p in parents) == ["FINISHED", "KILLED"]
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "KILLED"]
