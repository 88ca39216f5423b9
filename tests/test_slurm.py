"""The SLURM launcher against a real SLURM: a single-node cluster of Debian's packages on this
machine (scripts/slurm-local.sh: munged, slurmctld, slurmd, slurmdbd on MariaDB), issue 25.

A sweep's runs are one job array; a cancelled task, a job over its time limit, a job requeued by
``scontrol requeue`` and a run that fails inside its job end as the train stage promises. The
cluster has accounting (sacct) except for the last test, which restarts it without (as many small
clusters run): a cancelled task must still end the sweep, within two polls.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, epochs_logged, run_cli
from test_sweeps import done, mlflow_runs, run_dir

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts/slurm-local.sh"
DVC = str(Path(sys.executable).parent / "dvc")
# The sweep's squeue interval here (OVERFITLAB_SLURM_POLL_S, 10 s by default; set it to measure that)
POLL_S = float(os.environ.get("OVERFITLAB_SLURM_POLL_S") or 2)


def slurm_local(directory: Path, *args: str) -> str:
    result = subprocess.run(
        [str(SCRIPT), *args],
        env={**os.environ, "OVERFITLAB_SLURM_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster, with accounting, for this module's tests; stopped (nothing left running) after."""
    directory = tmp_path_factory.mktemp("slurm")
    before = dict(os.environ)
    slurm_local(directory, "start")
    os.environ["SLURM_CONF"] = str(directory / "slurm.conf")
    os.environ["OVERFITLAB_SLURM_POLL_S"] = str(POLL_S)
    stop = threading.Event()
    releasing = threading.Thread(target=start_requeued_now, args=(stop,), daemon=True)
    releasing.start()
    try:
        yield directory
    finally:
        stop.set()
        releasing.join()
        os.environ.clear()
        os.environ.update(before)
        out = slurm_local(directory, "stop")
        assert "MariaDB stopped" in out or "--no-accounting" in out or "munged stopped" in out


@pytest.fixture
def slurm_project(cluster, project, prepared):
    """The small study's project, its train stage on the cluster: a preset of the project's own
    (`launcher: slurm_here`), one CPU and 1 GB per job so that two jobs run at once."""
    (project / ".venv").symlink_to(ROOT / ".venv")  # the batch script activates the project's .venv
    (project / "conf/hydra/launcher/slurm_here.yaml").write_text(
        "defaults:\n  - slurm\n  - _self_\ncpus_per_task: 1\nmem_gb: 1\n"
    )
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["launcher"] = "slurm_here"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    yield project
    for process in STARTED:  # a test that failed midway leaves no sweep or job behind
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    STARTED.clear()
    subprocess.run(["scancel", "--user", "root"], check=False)


def sacct(*job_ids: str) -> dict[str, str]:
    listing = subprocess.run(
        ["sacct", "--noheader", "--parsable2", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|", 1) for line in listing.splitlines() if line)


def job_ids(project: Path) -> list[str]:
    """The SLURM job ids of the sweeps' jobs (submitit's folders), oldest first."""
    folders = project.glob("outputs/hydra/multirun/*/.submitit/*")
    tasks = {p.name for p in folders if p.is_dir() and "_" in p.name}  # <array>_<task>
    return sorted(tasks, key=lambda j: [int(x) for x in j.split("_")])


def train(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_cli(
        sys.executable, "-m", "overfitlab.train", "-m", "hydra/launcher=slurm_here",
        "trainer.progress_bar=false", *overrides, timeout=timeout,
    )  # fmt: skip


def test_the_train_stage_runs_as_one_job_array_on_slurm(slurm_project):
    project = slurm_project
    for args in (["git", "init", "-q"], [DVC, "init", "-q"]):
        subprocess.run(args, cwd=project, check=True, capture_output=True)
    result = run_cli(DVC, "repro", "train", cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for model in ("mlp_300_100", "model_d"):
        for seed in (0, 1):
            assert done(project, model, seed)["epochs"] == 2
    ids = job_ids(project)
    assert len(ids) == 4 and len({i.split("_")[0] for i in ids}) == 1, ids  # one array of 4 tasks
    # sacct (accounting) has every task COMPLETED, once their processes have exited
    wait_until(lambda: set(sacct(*ids).values()) == {"COMPLETED"}, "the tasks COMPLETED", timeout=60)
    _, parents, children = mlflow_runs(project)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4


STARTED: list[subprocess.Popen] = []


def start_sweep(*overrides: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "overfitlab.train", "-m", "hydra/launcher=slurm_here",
         "trainer.progress_bar=false", *overrides],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    STARTED.append(process)
    return process


def queue() -> dict[str, str]:
    """squeue's view: {job id (array tasks one by one): state}."""
    listing = subprocess.run(
        ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split() for line in listing.splitlines() if line.strip())


def wait_until(condition, what: str, process: subprocess.Popen | None = None, timeout: float = 240):
    deadline = time.time() + timeout
    while not (found := condition()):
        assert process is None or process.poll() is None, f"the sweep ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return found


def start_requeued_now(stop) -> None:
    """SLURM (22.05) makes a requeued job eligible again only 2 minutes later (its EligibleTime;
    Reason=BeginTime): here it may start at once, so that the tests wait for no scheduler policy."""
    while not stop.wait(0.5):
        listing = subprocess.run(
            ["squeue", "--noheader", "--states=PENDING", "--format=%i %r"], capture_output=True, text=True
        ).stdout
        for job_id, reason in (line.split() for line in listing.splitlines() if line.strip()):
            if reason == "BeginTime":
                subprocess.run(
                    ["scontrol", "update", f"jobid={job_id}", "starttime=now"], capture_output=True
                )


def finish(process: subprocess.Popen, timeout: float = 420) -> str:
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            subprocess.run(["scancel", "--user", "root"], check=False)
    return stderr


def last_error(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.startswith("error:")][-1]


SEEDS = ("model=mlp_300_100", "seed=0,1,2", "train.epochs=2")


def test_a_cancelled_task_is_a_failed_run_and_the_rerun_trains_only_it(slurm_project):
    project = slurm_project
    # One task at a time, so that the last one is still pending when it is cancelled.
    process = start_sweep(*SEEDS, "hydra.launcher.array_parallelism=1")
    task = wait_until(
        lambda: next((j for j, s in queue().items() if j.endswith("_2") and s == "PENDING"), None),
        "the array's third task", process,
    )  # fmt: skip
    subprocess.run(["scancel", task], check=True)
    stderr = finish(process)
    assert process.returncode == 1, stderr[-3000:]
    last = last_error(stderr)
    assert "1 run(s) failed" in last and "seed=2" in last, last
    # squeue and sacct forget a task cancelled while pending (sacct never saw it start)
    assert f"job {task} ended without a result (state unknown: no longer in SLURM's queue" in last, last
    assert done(project, "mlp_300_100", 0) and done(project, "mlp_300_100", 1)
    assert done(project, "mlp_300_100", 2) is None

    again = train(*SEEDS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already trained") == 2  # only the cancelled run trained
    assert done(project, "mlp_300_100", 2)["epochs"] == 2


def test_a_run_failing_inside_its_job_is_a_failed_run_with_its_error(slurm_project):
    from test_sweeps import BROKEN_MODEL

    project = slurm_project
    (project / "conf/model/broken.yaml").write_text(BROKEN_MODEL)
    result = train("model=mlp_300_100,broken", "seed=0", "train.epochs=2")
    assert result.returncode == 1, result.stderr[-3000:]
    last = last_error(result.stderr)
    assert "1 run(s) failed" in last and "broken" in last and "mlp_300_100" not in last, last
    failed = json.loads((run_dir(project, "broken", 0) / "failed.json").read_text())
    assert failed["error"].split(":")[0] in last  # the run's own error line, not "job ... ended"
    assert done(project, "mlp_300_100", 0)["epochs"] == 2
    ids = job_ids(project)  # the jobs themselves ended normally
    wait_until(lambda: set(sacct(*ids).values()) == {"COMPLETED"}, "the tasks COMPLETED", timeout=60)


def long_run_then(
    project: Path, action, *overrides: str, epochs: int, timeout: float = 420
) -> tuple[str, dict]:
    """One run of ``epochs`` epochs; ``action(job id)`` once it has logged two epochs (the first one's
    state then taken: on disk, or in memory until a SIGTERM writes it); its stderr and done.json."""
    process = start_sweep("model=mlp_300_100", "seed=0", f"train.epochs={epochs}", *overrides)
    wait_until(lambda: epochs_logged(project, "mlp_300_100", "0") >= 2, "the run's second epoch", process)
    running = [j for j, state in queue().items() if state == "RUNNING"]
    assert len(running) == 1, running
    action(running[0])
    stderr = finish(process, timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stderr, done(project, "mlp_300_100", 0)


def test_scontrol_requeue_of_a_running_job_resumes_its_run(slurm_project):
    requeued = []

    def requeue(job_id: str) -> None:
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        requeued.append(time.time())

    stderr, record = long_run_then(slurm_project, requeue, epochs=150)
    assert requeued and "resumed after epoch" in stderr
    assert record["epochs"] == 150 and record["resumed_after_epoch"] >= 1
    _, _, children = mlflow_runs(slurm_project)
    assert "FINISHED" in [c.info.status for c in children]


def test_a_job_at_its_time_limit_is_requeued_and_its_run_resumes(slurm_project):
    # SLURM's limit 3 min, USR2 60 s before it: submitit requeues the job, which resumes the run from
    # its checkpoint. No step depends on how fast this machine is (issue 30: it failed on a busy one):
    # - SLURM may send USR2 up to a minute early, and submitit handles it only once the job's code is
    #   imported (an earlier USR2 kills the job): 3 min - 60 s - 60 s leaves the job a minute to start;
    # - the run is longer than any number of attempts (an attempt signalled before its first
    #   checkpoint starts over), and the test waits for the resume in the job's log, then cancels it.
    process = start_sweep(
        "model=mlp_300_100", "seed=0", "train.epochs=1000000", "hydra.launcher.timeout_min=3",
        "hydra.launcher.signal_delay_s=60", "hydra.launcher.max_num_timeout=12",
    )  # fmt: skip

    def logs() -> str:
        return "".join(
            p.read_text() for p in slurm_project.glob("outputs/hydra/multirun/*/.submitit/*/*_log.*")
        )

    try:
        wait_until(
            lambda: "resumed after epoch" in logs(), "a requeued attempt's resume", process, timeout=540
        )
    finally:
        finish_now(process)
    text = logs()
    assert "Caught signal SIGUSR2" in text and "Requeued job" in text
    assert int(re.search(r"resumed after epoch (\d+)", text).group(1)) >= 1


def finish_now(process: subprocess.Popen) -> None:
    """Cancel the sweep's jobs and end it."""
    subprocess.run(["scancel", "--user", "root"], check=False)
    finish(process, timeout=60)


def test_without_accounting_a_cancelled_task_ends_the_sweep_within_two_polls(cluster, slurm_project):
    """Last (it restarts the cluster without slurmdbd): sacct fails, and squeue alone ends the sweep."""
    slurm_local(cluster, "restart", "--no-accounting")
    assert subprocess.run(["sacct", "-j", "1"], capture_output=True).returncode != 0
    process = start_sweep(*SEEDS, "hydra.launcher.array_parallelism=1")
    task = wait_until(
        lambda: next((j for j, s in queue().items() if j.endswith("_2") and s == "PENDING"), None),
        "the array's third task", process,
    )  # fmt: skip
    subprocess.run(["scontrol", "hold", task], check=True)  # it waits while the others finish
    results = "outputs/hydra/multirun/*/.submitit/*/*_result.pkl"
    wait_until(lambda: len(list(slurm_project.glob(results))) == 2, "the other two runs", process)
    subprocess.run(["scancel", task], check=True)
    cancelled = time.time()
    stderr = finish(process, timeout=120)
    noticed = time.time() - cancelled
    assert process.returncode == 1, stderr[-3000:]
    last = last_error(stderr)  # held, the task was split from the array: squeue lists it CANCELLED
    assert f"job {task} ended without a result (state CANCELLED)" in last, last
    # two polls, plus the time the sweep takes to end (its MLflow parent run, Hydra's callbacks)
    assert noticed < 2 * POLL_S + 15, noticed
    print(f"without accounting: cancelled task noticed and the sweep ended {noticed:.1f} s later")
