"""Where a sweep's runs train: the launcher presets of conf/hydra/launcher/ (issue 13).

The SLURM path is run end to end through `local_jobs`: the same submitit jobs (pickled launcher,
own process and log folder, submitit's signal handling and requeueing) on this machine. SLURM
itself is not here: for `slurm` / `slurm_gpu` the batch script submitit would submit is checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, epochs_logged
from test_sweeps import done, mlflow_runs, train

PY = sys.executable
CORES = len(os.sched_getaffinity(0))


def launcher_config(name: str, *overrides: str, config_dir: Path | None = None):
    from hydra import compose, initialize_config_dir

    import overfitlab.resolvers  # noqa: F401

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir or ROOT / "conf")):
        cfg = compose("train", [f"hydra/launcher={name}", *overrides], return_hydra_config=True)
    return cfg.hydra.launcher


@pytest.mark.parametrize(
    "name,overrides,at_once,here",
    [
        ("local", [], 1, 1),  # one run after another
        ("parallel", [], CORES, CORES),  # a worker per core
        ("parallel", ["hydra.launcher.n_jobs=2"], 2, 2),
        ("local_jobs", [], CORES, CORES),  # a submitit job per core
        ("local_jobs", ["hydra.launcher.array_parallelism=2"], 2, 2),
        ("slurm", [], 256, 1),  # each job alone on its cores
        ("slurm_gpu", ["hydra.launcher.array_parallelism=1"], 1, 1),
    ],
)
def test_each_launcher_shares_out_the_cores_and_says_how_many_jobs_run_at_once(
    project, name, overrides, at_once, here
):
    from overfitlab.launching import jobs_at_once, parallel_runs, threads_per_run

    launcher = launcher_config(name, *overrides, config_dir=project / "conf")
    assert jobs_at_once(launcher) == at_once  # > 1: seeds are never vectorized (two jobs, same seeds)
    assert parallel_runs(launcher) == here
    assert threads_per_run(launcher) == max(1, CORES // here)


def test_slurm_threads_follow_the_cores_slurm_allocated(monkeypatch):
    from overfitlab.machine import cpu_count

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert cpu_count() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4096")
    assert cpu_count() == CORES


@pytest.mark.parametrize("study", [".", "studies/mine"])
def test_the_slurm_gpu_batch_script_asks_one_gpu_per_run_and_activates_the_project(
    project, tmp_path, monkeypatch, study
):
    from hydra.utils import instantiate

    bin_dir = tmp_path / "bin"  # submitit's SLURM executor wants srun on the PATH
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (project / study).mkdir(parents=True, exist_ok=True)
    (project / study / "params.yaml").write_text((project / "params.yaml").read_text())
    monkeypatch.chdir(project / study)  # a study directory: the environment is still the project's
    launcher = launcher_config("slurm_gpu", "hydra.launcher.partition=gpu", config_dir=project / "conf")
    executor = instantiate(launcher).executor()._executor
    executor.parameters["map_count"] = 4  # as submitit submits a sweep of 4 runs: one job array
    script = executor._make_submission_file_text(executor._submitit_command_str, "x")
    for line in (
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --time=60",
        "#SBATCH --partition=gpu",
        "#SBATCH --array=0-3%4",
        "#SBATCH --signal=USR2@120",
        f"source {project.resolve()}/.venv/bin/activate",
    ):
        assert line in script.splitlines(), (line, script)
    assert executor.max_num_timeout == 3  # a job stopped at its time limit is requeued up to 3 times


def job_processes(project: Path) -> dict[str, int]:
    """The training processes of this project's running submitit jobs, by their run:
    {'model=mlp_300_100 seed=0': pid}. A job's overrides are in its submitted pickle."""
    from submitit.core.utils import DelayedSubmission

    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"submitit.core._submit" not in (proc / "cmdline").read_bytes():
                continue
            environ = dict(
                item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item
            )
        except OSError:
            continue
        job_id = environ.get(b"SUBMITIT_LOCAL_JOB_ID", b"").decode()
        for pickle in project.glob(f"outputs/hydra/multirun/*/.submitit/{job_id}/{job_id}_submitted.pkl"):
            overrides = DelayedSubmission.load(pickle).args[0]
            keys = [o for o in overrides if o.split("=")[0] in ("model", "seed")]
            found[" ".join(keys)] = int(proc.name)
    return found


def start(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "overfitlab.train", "-m", "trainer.progress_bar=false", *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def signal_run_mid_training(process, project: Path, run: str, signum: int) -> None:
    """Send ``signum`` to the job training ``run`` ('model=... seed=...') once it has logged two epochs:
    the first epoch's state has then been taken (at the second's start), in memory or on disk, so a
    signal that lets the job write it (USR2, SIGTERM) leaves a checkpoint to resume, whenever it
    comes (training/checkpoint.py)."""
    model, seed = (part.split("=")[1] for part in run.split())
    deadline = time.time() + 240
    while True:
        assert process.poll() is None and time.time() < deadline, "the sweep ended before the signal"
        pid = job_processes(project).get(run)
        if pid and epochs_logged(project, model, seed) >= 2:
            assert done(project, model, int(seed)) is None, "the run ended before the signal"
            os.kill(pid, signum)
            return
        time.sleep(0.3)


SWEEP = (
    "hydra/launcher=local_jobs",
    "hydra.launcher.array_parallelism=2",
    "model=mlp_300_100,model_d",
    "seed=0,1",
)


def max_overlap(children) -> int:
    """Most MLflow child runs open at one time."""
    events = sorted([(c.info.start_time, 1) for c in children] + [(c.info.end_time, -1) for c in children])
    open_runs = most = 0
    for _, step in events:
        open_runs += step
        most = max(most, open_runs)
    return most


@pytest.mark.slow
def test_a_sweep_of_submitit_jobs_trains_every_run_two_at_a_time(prepared, project):
    result = train(*SWEEP, "train.epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    for model in ("mlp_300_100", "model_d"):
        for seed in (0, 1):
            record = done(project, model, seed)
            assert record is not None and record["epochs"] == 2
            assert record["device"] == f"cpu ({max(1, CORES // 2)} threads)"  # 2 jobs share the cores
    _, parents, children = mlflow_runs(project)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert max_overlap(children) <= 2
    jobs = list(project.glob("outputs/hydra/multirun/*/.submitit/*/*_result.pkl"))
    assert len(jobs) == 4  # one submitit job per run, each with its result


@pytest.mark.slow
def test_a_killed_job_fails_only_its_run_and_the_rerun_trains_only_that_run(prepared, project):
    process = start(*SWEEP, "train.epochs=40")
    try:
        signal_run_mid_training(process, project, "model=mlp_300_100 seed=0", signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # The other jobs went on; the sweep's end names the dead job and exits 1.
    assert process.returncode == 1, stderr[-3000:]
    last = [line for line in stderr.splitlines() if line.startswith("error:")][-1]
    assert "1 run(s) failed" in last and "model=mlp_300_100" in last and "seed=0" in last
    assert "ended without a result" in last
    assert done(project, "mlp_300_100", 0) is None
    assert all(done(project, m, s) for m, s in (("mlp_300_100", 1), ("model_d", 0), ("model_d", 1)))

    again = train(*SWEEP, "train.epochs=40")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already trained") == 3  # only the killed run trained again
    assert done(project, "mlp_300_100", 0)["epochs"] == 40
    _, parents, children = mlflow_runs(project)
    assert sorted(p.info.status for p in parents) == ["FAILED", "FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4 + ["KILLED"]


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_its_run(prepared, project):
    process = start(*SWEEP, "train.epochs=40")
    try:
        # USR2 is what SLURM sends before a time limit (and submitit on preemption): requeue the job.
        signal_run_mid_training(process, project, "model=model_d seed=1", signal.SIGUSR2)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr[-3000:]
    for model in ("mlp_300_100", "model_d"):
        for seed in (0, 1):
            assert done(project, model, seed)["epochs"] == 40
    _, parents, children = mlflow_runs(project)
    assert [p.info.status for p in parents] == ["FINISHED"]
    killed = [c for c in children if c.info.status == "KILLED"]
    assert [(c.data.tags["model"], c.data.tags["seed"]) for c in killed] == [("model_d", "1")]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4 + ["KILLED"]
    logs = "".join(p.read_text() for p in project.glob("outputs/hydra/multirun/*/.submitit/*/*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
    # the requeued job continued after the run's last completed epoch (training/checkpoint.py)
    assert "model_d epochs=40 seed=1: resumed after epoch" in stderr, stderr[-3000:]
    assert done(project, "model_d", 1)["resumed_after_epoch"] >= 1
