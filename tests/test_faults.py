"""Nothing wrong is recorded as right (issue 30): keys nothing reads are refused, booleans are
checked, damaged checkpoints are never resumed, one process trains a run, a failure (a full disk
included) exits non-zero with one line and leaves nothing RUNNING, sweep values and prepared data
are checked before anything trains, and a command line that replaces a study axis says so.
Each case ran to a wrong success on the code before these checks."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import compose, run_cli
from overfitlab.data.datasets import load_prepared
from overfitlab.runlock import RunLock, lock_file
from overfitlab.training.checkpoint import EpochCheckpoint, digest_file
from overfitlab.training.fitting import fit
from test_resume import Interrupted, stop_after

PY = sys.executable


def train(*args: str):
    flags = [a for a in args if a.startswith("-")]  # -m before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    return run_cli(PY, "-m", "overfitlab.train", *flags, "trainer.progress_bar=false", *overrides)


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


@pytest.mark.parametrize(("value", "shown"), [("-1", "-1"), ("soon", "'soon'")])
def test_the_checkpoint_interval_is_a_number_of_seconds(prepared, project, value, shown):
    result = train(f"trainer.checkpoint_every_s={value}")
    assert result.returncode == 2
    assert f"error: trainer.checkpoint_every_s={shown} must be a number of seconds" in result.stderr


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


# ---- verified checkpoints (item 2)


def damage(path, offset: int = 2048, size: int = 4096) -> None:
    """Random bytes over part of a file, as a bad disk block or a bad copy would leave it."""
    data = bytearray(path.read_bytes())
    offset = min(offset, len(data) - size)
    data[offset : offset + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def interrupted_fit(cfg, data, path, owners=("hash",)):
    EpochCheckpoint(path, []).remove()  # a fresh start
    with pytest.raises(Interrupted):  # 2 epochs checkpointed
        fit(cfg, data, stop_after(3), extra_callbacks=[EpochCheckpoint(path, list(owners))])


def test_a_damaged_checkpoint_is_never_resumed_and_the_run_starts_over(prepared, tmp_path):
    cfg = compose("train", ["model=mlp_300_100", "train.epochs=3", "trainer.progress_bar=false"])
    data = load_prepared(prepared)
    whole = fit(cfg, data).module
    path = tmp_path / "checkpoint.pt"

    def resume(owners=("hash",)):
        told = []
        saving = EpochCheckpoint(path, list(owners), on_discard=told.append)
        module = fit(cfg, data, extra_callbacks=[saving]).module
        return saving, module, told

    cases = {
        "4 KB of random bytes": lambda: damage(path),
        "its digest file lost": lambda: digest_file(path).unlink(),
    }
    for case, harm in cases.items():
        interrupted_fit(cfg, data, path)
        harm()
        saving, module, told = resume()
        assert saving.resumed_from == 0, case
        assert len(told) == 1 and "not resumed" in told[0] and "starts over from epoch 1" in told[0], told
        assert module.history == whole.history, case  # the numbers of a run trained from scratch

    # Damaged inside a record, the table of records intact: the record's CRC32 catches it.
    interrupted_fit(cfg, data, path)
    blob = bytearray(path.read_bytes())
    start = blob.index(b"data/0") + 200  # inside the first tensor's record, after its local header
    blob[start : start + 64] = bytes(64)
    path.write_bytes(bytes(blob))
    saving, module, told = resume()
    assert saving.resumed_from == 0 and "fails its CRC32" in told[0], told

    # Intact but another config's: said, and not resumed.
    interrupted_fit(cfg, data, path, owners=("another config",))
    saving, module, told = resume()
    assert saving.resumed_from == 0 and "belongs to other runs" in told[0], told

    # Intact and ours: resumed.
    interrupted_fit(cfg, data, path)
    saving, module, told = resume()
    assert saving.resumed_from == 2 and told == [] and module.history == whole.history


@pytest.mark.slow
def test_a_run_with_a_damaged_checkpoint_starts_over_with_one_line(prepared, project):
    args = ("model=mlp_300_100", "train.epochs=3")
    first = train(*args, "trainer.keep_checkpoint=true")
    assert first.returncode == 0, first.stderr[-2000:]
    directory = project / "runs/fashion_mnist/mlp_300_100/epochs=3/seed=0"
    metrics = (directory / "metrics.csv").read_bytes()
    (checkpoint,) = directory.glob("checkpoint-*.pt")
    (directory / "done.json").unlink()  # as if killed after its last checkpoint
    damage(checkpoint, offset=len(checkpoint.read_bytes()) // 2)
    again = train(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    said = [line for line in again.stderr.splitlines() if "not resumed" in line]
    assert len(said) == 1 and "starts over from epoch 1" in said[0], said
    done = json.loads((directory / "done.json").read_text())
    assert "status" not in done and done["resumed_after_epoch"] == 0  # complete, not "diverged"
    assert (directory / "metrics.csv").read_bytes() == metrics


# ---- one trainer per run (item 3)


@pytest.mark.slow
def test_two_sweeps_over_the_same_runs_train_each_run_once(prepared, project):
    command = [PY, "-m", "overfitlab.train", "-m", "trainer.progress_bar=false", "model=mlp_300_100",
               "seed=0,1", "train.epochs=3"]  # fmt: skip
    sweeps = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [s.communicate(timeout=600)[1] for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], errors
    client, _, children = mlflow_children(project)
    for seed in (0, 1):
        runs_of_seed = [c for c in children if c.data.tags["seed"] == str(seed)]
        assert [c.info.status for c in runs_of_seed] == ["FINISHED"], (seed, errors)
        done = json.loads(
            (project / f"runs/fashion_mnist/mlp_300_100/epochs=3/seed={seed}/done.json").read_text()
        )
        assert done["resumed_after_epoch"] == 0  # never continued from another process's live checkpoint
    assert not list((project / "runs").rglob("*.lock"))  # each holder removed its lock


def test_a_lock_whose_holder_died_is_taken(tmp_path):
    run_dir = tmp_path / "runs/seed=0"
    take = "import sys; from overfitlab.runlock import RunLock; RunLock(sys.argv[1]).try_acquire()"
    holder = subprocess.run([PY, "-c", take, str(run_dir)])
    assert holder.returncode == 0 and lock_file(run_dir).exists()  # died holding it, file left behind
    lock = RunLock(run_dir)
    assert lock.try_acquire()
    assert not RunLock(run_dir).try_acquire()  # held: another process waits
    lock.release()
    assert not lock_file(run_dir).exists() and RunLock(run_dir).try_acquire()


def mlflow_children(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("test-study").experiment_id])
    return client, found, [r for r in found if "mlflow.parentRunId" in r.data.tags or "seed" in r.data.tags]


# ---- honest exit codes and final states (item 4): a full disk, for real (a small tmpfs)


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["true", "false"])  # full while checkpointing / writing final files
def test_a_full_disk_fails_the_run_with_one_line_and_nothing_running(prepared, project, checkpoint):
    runs = project / "runs"
    runs.mkdir()
    train_command = shlex.join(
        [PY, "-m", "overfitlab.train", "trainer.progress_bar=false", "model=mlp_300_100",
         f"trainer.checkpoint={checkpoint}"]
    )  # fmt: skip
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=12k tmpfs {runs} && exec {train_command}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    failed = [line for line in result.stderr.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "No space left on device" in failed[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    client, found, _ = mlflow_children(project)
    assert [r.info.status for r in found] == ["FAILED"]
    # The tmpfs is gone with its namespace; the run directory the user sees is the one underneath.
    assert not list(runs.rglob("done.json"))


# ---- sweep values preflighted (item 5), prepared data checked (item 6)


@pytest.mark.parametrize(
    "sweep, message",
    [
        ("train.batch_size=32,0", "train.batch_size=0"),
        ("train.loss=cross_entropy,hinge", "train.loss='hinge'"),
    ],
)
def test_every_sweep_value_is_checked_before_job_0_trains(prepared, project, sweep, message):
    result = train("-m", "model=mlp_300_100", sweep)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (project / "runs").exists() and not (project / "mlflow.db").exists()


@pytest.mark.parametrize("harm", ["labels changed", "array truncated", "array deleted", "meta.json deleted"])
def test_prepared_data_that_no_longer_matches_its_version_is_one_line(prepared, project, harm):
    labels = prepared / "train_labels.npy"
    if harm == "labels changed":
        values = np.load(labels)
        np.save(labels, (values + 1) % 10)
    elif harm == "array truncated":
        images = prepared / "train_images.npy"
        images.write_bytes(images.read_bytes()[:1000])
    elif harm == "array deleted":
        labels.unlink()
    else:
        (prepared / "meta.json").unlink()
    commands = [("model=mlp_300_100",)]
    if harm == "labels changed":  # a sweep checks every job's data before job 0 (one case is enough)
        commands.append(("-m", "model=mlp_300_100", "seed=0,1"))
    for args in commands:
        result = train(*args)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "dvc repro prepare" in lines[0], lines
        assert not (project / "runs").exists() and not (project / "mlflow.db").exists()


@pytest.mark.slow
def test_a_bad_combination_in_a_sweep_fails_its_jobs_only_and_closes_the_parent(prepared, project):
    # Each value is fine alone (preflight passes); smoothing with squared error is not.
    result = train("-m", "model=mlp_300_100", "seed=0", "train.epochs=1",
                   "train.loss=cross_entropy,squared_error", "train.label_smoothing=0,0.1")  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: 1 run(s) failed" in result.stderr and "train.label_smoothing=0.1 needs" in result.stderr
    assert len(list((project / "runs").rglob("done.json"))) == 3  # the sweep went on after the bad job
    client, found, _ = mlflow_children(project)
    statuses = sorted(r.info.status for r in found)
    assert "RUNNING" not in statuses and statuses.count("FINISHED") == 3, statuses


def test_a_lock_left_by_a_killed_trainer_is_not_part_of_the_runs_output(tmp_path):
    import shutil

    from conftest import BIN, ROOT

    dvc = str(BIN / "dvc")
    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    for command in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    left = lock_file(tmp_path / "runs/fashion_mnist/mlp_300_100/seed=0")
    left.parent.mkdir(parents=True)
    left.write_text("4242\n")
    (left.parent / "seed=0").mkdir()
    (left.parent / "seed=0/done.json").write_text("{}")
    ignored = [str(left.relative_to(tmp_path)), "runs/fashion_mnist/mlp_300_100/seed=0/done.json"]
    result = subprocess.run([dvc, "check-ignore", *ignored], cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.split() == [ignored[0]], result.stdout + result.stderr


def test_a_signal_during_an_mlflow_write_lands_after_it():
    """A requeue's USR2 (or SIGTERM) that lands in an MLflow write waits for it to end: raised inside an
    SQLite commit, it left the store locked for every later write of the sweep."""
    import os
    import signal

    from overfitlab.tracking.run_logger import signals_held

    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: seen.append("handled"))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)  # without the hold, the handler runs here
            seen.append("written")
        assert seen == ["written", "handled"]
    finally:
        signal.signal(signal.SIGUSR2, previous)
