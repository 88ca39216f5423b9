"""The real pipeline end to end: `dvc repro` in a throw-away git + DVC repository.

Covers the full chain (prepare -> train sweeps -> collect -> report), the no-op second run,
resuming after a lost run, adding a model (only it trains) and a Ctrl-C in the middle.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli, set_params

pytestmark = pytest.mark.slow
DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture
def repo(project):
    for args in (
        ["git", "init", "-q"],
        [DVC, "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        subprocess.run(args, cwd=project, check=True, capture_output=True)
    return project


def repro(repo):
    result = run_cli(DVC, "repro", cwd=repo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def done(repo, model, seed):
    return json.loads((repo / "runs/fashion_mnist" / model / f"seed={seed}/done.json").read_text())


def test_dvc_repro_end_to_end_then_noop_then_resume_then_new_model(repo):
    out = repro(repo)
    assert out.count("✓ fashion_mnist") == 4  # 2 models x 2 seeds, one line per finished run
    assert (repo / "reports/index.html").exists()
    for name in ("final_test_accuracy", "learning_curves", "generalization_gap", "loss_curves"):
        assert (repo / "reports/figures" / f"{name}.png").exists()
    epochs = pd.read_parquet(repo / "reports/metrics/epochs.parquet")
    assert len(epochs) == 2 * 2 * 2 and set(epochs.model) == {"mlp_300_100", "model_d"}
    summary = json.loads((repo / "reports/metrics/summary.json").read_text())
    assert summary["fashion_mnist"]["model_d"]["n_seeds"] == 2

    # MLflow: one experiment, a parent per sweep, every seed a finished child with epoch steps.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("test-study")
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, "test_acc")] == [1, 2]

    # Nothing changed: nothing runs, and it is quick.
    start = time.perf_counter()
    out = repro(repo)
    assert "up to date" in out and "Running stage" not in out
    assert time.perf_counter() - start < 30

    # A lost run (killed before its done-marker) is retrained alone; finished seeds are kept.
    kept = done(repo, "model_d", 0)["mlflow_run_id"]
    (repo / "runs/fashion_mnist/model_d/seed=1/done.json").unlink()
    out = repro(repo)
    assert "✓ fashion_mnist model_d seed=1" in out and out.count("✓") == 1
    assert "model_d seed=0: already trained" in out
    assert done(repo, "model_d", 0)["mlflow_run_id"] == kept
    assert "mlp_300_100 seed=1: already trained" in out

    # Adding an architecture trains only that architecture.
    set_params(repo, study={"models": ["mlp_300_100", "model_d", "model_a"]})
    out = repro(repo)
    assert "✓ fashion_mnist model_a seed=0" in out and "✓ fashion_mnist model_a seed=1" in out
    assert out.count("✓") == 2 and "model_d seed=1: already trained" in out
    assert set(pd.read_csv(repo / "reports/metrics/runs.csv").model) == {"mlp_300_100", "model_d", "model_a"}


def test_interrupted_repro_resumes_without_retraining_finished_seeds(repo):
    # Six seeds of 20 epochs: after the first one finishes, seconds of training are left, so the
    # Ctrl-C lands mid-sweep (with 3 epochs a seed took 0.1 s and the whole rest could slip by).
    set_params(repo, study={"models": ["model_d"], "seeds": [0, 1, 2, 3, 4, 5]}, train={"epochs": 20})
    # As from a terminal: SIGINT at its default even when the tests themselves run in a background
    # job (where the shell ignores SIGINT and every child, Python included, would inherit that).
    proc = subprocess.Popen(
        [DVC, "repro"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = repo / "runs/fashion_mnist/model_d/seed=0/done.json"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.exists(), "the first seed never finished"
    assert proc.poll() is None, "dvc repro finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    output = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert proc.returncode != 0, output[-4000:]
    assert not (repo / "runs/fashion_mnist/model_d/seed=5/done.json").exists()
    finished = done(repo, "model_d", 0)["mlflow_run_id"]

    out = repro(repo)
    assert "model_d seed=0: already trained" in out
    assert done(repo, "model_d", 0)["mlflow_run_id"] == finished
    runs = pd.read_csv(repo / "reports/metrics/runs.csv")
    assert sorted(runs.seed) == [0, 1, 2, 3, 4, 5] and (runs.epochs == 20).all()
