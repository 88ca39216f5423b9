"""The team's DVC remote for real: a study run with scripts/study.sh in a git + DVC repository made
from a project copy (with the project's .dvc/config and .gitignore) and pushed; a fresh `git clone`
pointed at the remote (OVERFITLAB_DVC_REMOTE) gets it with scripts/study.sh: the pull restores the
outputs, `dvc repro` retrains nothing, `dvc status` is clean and `dvc plots show` draws the curves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, set_params

DVC = str(Path(sys.executable).parent / "dvc")
GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@t"]


def run(*args: str, cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def done_files(repo: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(repo)): json.loads(p.read_text()) for p in sorted(repo.glob("runs/**/done.json"))
    }


@pytest.mark.slow
def test_a_pushed_study_is_pulled_by_a_fresh_clone_without_retraining(project, tmp_path):
    set_params(project, study={"models": ["mlp_300_100"], "seeds": [0, 1]}, train={"epochs": 1})
    # The project's own DVC config (default remote `team` at ../overfitlab-remote), ignores, scripts.
    shutil.copytree(ROOT / "scripts", project / "scripts")
    shutil.copy(ROOT / ".gitignore", project / ".gitignore")
    run("git", "init", "-q", cwd=project)
    run(DVC, "init", "-q", cwd=project)
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")
    run("git", "add", "-A", cwd=project)
    run("git", *GIT_USER, "commit", "-qm", "project", cwd=project)
    env = {**os.environ, "OVERFITLAB_SKIP_SETUP": "1"}
    env.pop("OVERFITLAB_DVC_REMOTE", None)
    remote = tmp_path / "overfitlab-remote"  # the default: beside the checkout

    # First run: the remote does not exist yet, which is no error; the study runs, then is pushed.
    first = run("scripts/study.sh", cwd=project, env=env)
    assert "Running stage 'train'" in first.stdout
    assert not remote.exists()
    run("git", "add", "-A", cwd=project)
    run("git", *GIT_USER, "commit", "-qm", "study results", cwd=project)
    tracked = run("git", "ls-files", cwd=project).stdout.split()
    assert "dvc.lock" in tracked and "reports/metrics/summary.json" in tracked
    pushed = run(DVC, "push", cwd=project)
    assert "files pushed" in pushed.stdout and remote.is_dir()
    trained = done_files(project)
    assert len(trained) == 2

    # A teammate's fresh clone elsewhere, pointed at the remote by OVERFITLAB_DVC_REMOTE.
    clone = tmp_path / "teammate" / "overfitlab"
    clone.parent.mkdir()
    run("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    assert not (clone / "runs").exists() and not (clone / "reports" / "metrics" / "curves").exists()
    second = run("scripts/study.sh", cwd=clone, env={**env, "OVERFITLAB_DVC_REMOTE": str(remote)})
    assert "missing outputs from the DVC remote 'team'" in second.stdout, second.stdout
    assert "Running stage" not in second.stdout, second.stdout  # nothing retrained or recomputed
    assert "Stage 'train' didn't change, skipping" in second.stdout
    assert done_files(clone) == trained  # the same runs (same MLflow run ids, wall times)
    status = run(DVC, "status", cwd=clone)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    assert not (clone / "mlflow.db").exists()  # no training happened, so nothing was logged

    plots = run(DVC, "plots", "show", "--json", cwd=clone)
    curves = json.loads(plots.stdout)
    assert not curves.get("errors"), curves["errors"]
    (name,) = [p for p in curves["data"] if p.startswith("reports/metrics/curves/")]
    values = curves["data"][name][0]["content"]["data"]["values"]
    expected = pd.read_csv(clone / name)
    assert {v["field"] for v in values} == {"train_acc", "val_acc", "test_acc"}
    assert sorted(float(v["train_acc"]) for v in values if v["field"] == "train_acc") == pytest.approx(
        sorted(expected.train_acc)
    )
    html = run(DVC, "plots", "show", "-o", str(tmp_path / "plots"), cwd=clone)
    assert (tmp_path / "plots" / "index.html").stat().st_size > 1000, html.stdout

    # The remote's location is the clone's own setting (.dvc/config.local, not committed).
    local = (clone / ".dvc" / "config.local").read_text()
    assert str(remote) in local and "config.local" not in run("git", "ls-files", cwd=clone).stdout

    # A study whose outputs exist here is never overwritten by a pull (an extended or interrupted
    # study keeps its runs): a third run finds nothing missing and does nothing.
    (clone / "runs/fashion_mnist/mlp_300_100/seed=0/metrics.csv").write_text("edited here\n")
    third = run("scripts/study.sh", "--dry", cwd=clone, env={**env, "OVERFITLAB_DVC_REMOTE": str(remote)})
    assert "missing outputs" not in third.stdout, third.stdout + third.stderr
    assert (clone / "runs/fashion_mnist/mlp_300_100/seed=0/metrics.csv").read_text() == "edited here\n"


def test_the_project_configures_a_default_remote_beside_the_checkout():
    def dvc(*args: str) -> str:
        return run(DVC, *args, cwd=ROOT).stdout.strip()

    assert dvc("remote", "default", "--project") == "team"
    assert dvc("config", "--project", "remote.team.url") == str(ROOT.parent / "overfitlab-remote")
