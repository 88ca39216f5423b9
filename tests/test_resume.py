"""Runs that survive preemption (issue 25): the state after every epoch (on disk every
``trainer.checkpoint_every_s`` and on an interruption), and a run interrupted mid-training (an
exception, SIGTERM, SIGUSR2 in a submitit job, kill -9) resumes from its last checkpoint with the
files of an uninterrupted run, byte for byte, on the same machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import compose, epochs_logged, run_cli, set_params
from overfitlab import identity, runs
from overfitlab.data.datasets import load_prepared
from overfitlab.training.checkpoint import EpochCheckpoint
from overfitlab.training.fitting import fit, fit_seeds

PY = sys.executable
RUN_FILES = ("metrics.csv", "test_predictions.npy", "train_examples.npz", "feature_maps.npz", "config.yaml")


class Interrupted(Exception):
    pass


def stop_after(epoch: int):
    def listener(row: dict) -> None:
        if row["epoch"] == epoch:
            raise Interrupted(f"after epoch {epoch}")

    return listener


def predictions(module) -> torch.Tensor:
    return torch.cat([t.cpu() for t in module.test_predictions])


@pytest.mark.parametrize(
    "run",
    [
        ["model=model_d"],  # dropout draws from the RNG
        ["model=mlp_300_100"],
        ["model=mlp_300_100", "train.augment=crop_flip"],  # augmentation draws from its own generator
    ],
)
def test_a_fit_resumed_from_its_checkpoint_ends_as_an_uninterrupted_fit(prepared, tmp_path, run):
    overrides = [*run, "train.epochs=4", "trainer.progress_bar=false", "trainer.threads=1"]
    cfg = compose("train", overrides)
    data = load_prepared(prepared)
    whole = fit(cfg, data).module

    path = tmp_path / "checkpoint.pt"
    first = EpochCheckpoint(path, ["hash"])
    with pytest.raises(Interrupted):  # the epoch listener runs inside epoch 3's end: 2 epochs saved
        fit(cfg, data, stop_after(3), extra_callbacks=[first])
    assert torch.load(path, weights_only=True)["epoch"] == 2
    seen, told = [], []
    second = EpochCheckpoint(path, ["hash"], on_resume=told.append)
    resumed = fit(cfg, data, seen.append, extra_callbacks=[second]).module
    assert told == [2] and second.resumed_from == 2
    assert [row["epoch"] for row in seen] == [1, 2, 3, 4]  # the restored epochs reach the listeners too
    assert resumed.history == whole.history  # every metric of every epoch, exactly
    assert torch.equal(predictions(resumed), predictions(whole))
    for name, value in whole.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[name], value), name
    assert torch.equal(torch.stack(resumed.example_record), torch.stack(whole.example_record))

    # A checkpoint of other runs (another config hash) is never resumed.
    other = EpochCheckpoint(path, ["another hash"], on_resume=told.append)
    fit(cfg, data, extra_callbacks=[other])
    assert told == [2] and other.resumed_from == 0


def test_between_writes_the_last_epoch_waits_in_memory_and_an_interruption_writes_it(prepared, tmp_path):
    """``every_s``: no write before it has passed; an exception inside the fit (what SIGTERM, a requeue
    and Ctrl-C also are) writes the last completed epoch's state, and the run resumes from it."""
    overrides = ["model=model_d", "train.epochs=4", "trainer.progress_bar=false", "trainer.threads=1"]
    cfg = compose("train", overrides)
    data = load_prepared(prepared)
    whole = fit(cfg, data).module
    path = tmp_path / "checkpoint.pt"
    on_disk = []

    def interrupted_at_3(row: dict) -> None:
        on_disk.append(path.exists())
        stop_after(3)(row)

    first = EpochCheckpoint(path, ["hash"], every_s=86400)
    with pytest.raises(Interrupted):
        fit(cfg, data, interrupted_at_3, extra_callbacks=[first])
    assert on_disk == [False, False, False]  # nothing written while training
    assert torch.load(path, weights_only=True)["epoch"] == 2  # written by the interruption
    second = EpochCheckpoint(path, ["hash"], every_s=86400)
    resumed = fit(cfg, data, extra_callbacks=[second]).module
    assert second.resumed_from == 2 and resumed.history == whole.history
    assert torch.equal(predictions(resumed), predictions(whole))
    assert torch.load(path, weights_only=True)["epoch"] == 2, "the complete fit wrote nothing more"
    second.flush()  # what a kept checkpoint or a failure after the fit writes
    assert torch.load(path, weights_only=True)["epoch"] == 4


def test_a_vectorized_seed_group_resumes_as_a_group(prepared, tmp_path):
    cfgs = [
        compose("train", ["model=mlp_300_100", f"seed={s}", "train.epochs=3", "trainer.progress_bar=false"])
        for s in (0, 1)
    ]
    data = load_prepared(prepared)
    whole = [f.module for f in fit_seeds(cfgs, data, [None, None], threads=1)]
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Interrupted):
        fit_seeds(cfgs, data, [None, stop_after(2)], [EpochCheckpoint(path, ["a", "b"])], threads=1)
    saving = EpochCheckpoint(path, ["a", "b"])
    resumed = [f.module for f in fit_seeds(cfgs, data, [None, None], [saving], threads=1)]
    assert saving.resumed_from == 1
    for alone, again in zip(whole, resumed, strict=True):
        assert again.history == alone.history
        assert torch.equal(predictions(again), predictions(alone))


def test_the_checkpoint_is_outside_every_run_identity():
    files = {p.relative_to(identity.PACKAGE).as_posix() for p in identity.numerics_code()}
    assert "training/checkpoint.py" not in files and "training/fitting.py" in files


# -- the train stage, interrupted for real ------------------------------------------------------


def start_train(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "overfitlab.train", "trainer.progress_bar=false", *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def interrupt_after(process: subprocess.Popen, project: Path, signum: int, epoch: int) -> None:
    """Send ``signum`` to the training process once it has logged ``epoch`` epochs."""
    deadline = time.time() + 240
    while epochs_logged(project) < epoch:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, "no epoch was logged"
        time.sleep(0.1)
    os.kill(process.pid, signum)
    process.communicate(timeout=120)


def checkpointed_epoch(directory: Path) -> int:
    found = list(directory.glob("checkpoint-*.pt"))
    return int(torch.load(found[0], weights_only=True)["epoch"]) if found else 0


def read_files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in RUN_FILES if (directory / name).exists()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "every_s"),
    [
        # kill -9: nothing can be written then; resumed from the last write (here: every epoch's)
        (signal.SIGKILL, 0),
        # SIGTERM (a preemption): nothing was on disk yet (no write for a day); the state of the last
        # completed epoch, kept in memory, is written on the signal, and the run resumes from it
        (signal.SIGTERM, 86400),
    ],
)
def test_an_interrupted_run_resumes_with_the_files_of_an_uninterrupted_one(
    prepared, project, signum, every_s
):
    set_params(project, train={"epochs": 12})  # in params.yaml: not an axis of the command line
    args = ["model=model_d", "trainer.threads=1", f"trainer.checkpoint_every_s={every_s}"]
    directory = project / "runs/fashion_mnist/model_d/seed=0"
    whole = run_cli(PY, "-m", "overfitlab.train", "trainer.progress_bar=false", *args)
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = read_files(directory)
    assert set(expected) == set(RUN_FILES)
    assert not list(directory.glob("checkpoint-*")), "the checkpoint is removed once the run is complete"
    done_before = json.loads((directory / "done.json").read_text())
    assert done_before["resumed_after_epoch"] == 0

    import shutil

    shutil.rmtree(project / "runs")
    process = start_train(*args)
    interrupt_after(process, project, signum, epoch=4)  # epoch 3's state was taken at epoch 4's start
    assert process.returncode != 0 and not (directory / "done.json").exists()
    assert checkpointed_epoch(directory) >= 3

    again = run_cli(PY, "-m", "overfitlab.train", "trainer.progress_bar=false", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed after epoch" in again.stderr
    done = json.loads((directory / "done.json").read_text())
    assert done["resumed_after_epoch"] >= 3 and done["config_hash"] == done_before["config_hash"]
    assert read_files(directory) == expected  # metrics.csv, predictions, ...: the same bytes
    assert done["weights_digests"] == done_before["weights_digests"]  # and the same weights each epoch
    assert not list(directory.glob("checkpoint-*"))


@pytest.mark.slow
def test_a_kept_checkpoint_and_a_checkpoint_of_another_config(prepared, project):
    directory = project / "runs/fashion_mnist/mlp_300_100/seed=0"
    kept = run_cli(
        PY, "-m", "overfitlab.train", "trainer.progress_bar=false", "model=mlp_300_100",
        "trainer.keep_checkpoint=true",
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr[-3000:]
    done = json.loads((directory / "done.json").read_text())
    checkpoint = runs.checkpoint_file(directory, done["config_hash"])
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2
    # Another config in the same directory (more epochs): it starts over, never from that checkpoint.
    set_params(project, train={"epochs": 3})
    other = run_cli(PY, "-m", "overfitlab.train", "trainer.progress_bar=false", "model=mlp_300_100")
    assert other.returncode == 0, other.stderr[-3000:]
    assert "resumed" not in other.stderr and not checkpoint.exists()
    assert json.loads((directory / "done.json").read_text())["resumed_after_epoch"] == 0
