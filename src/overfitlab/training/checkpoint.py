"""Runs that survive preemption: the training state saved after every epoch, and a restarted run
resumed from the last completed epoch with the numbers of an uninterrupted run.

``EpochCheckpoint`` is a Lightning callback the orchestration passes to ``fitting.fit`` /
``fit_seeds`` (``extra_callbacks``); nothing on the numerics path imports this module, so it is
outside every run's code hash (``identity.numerics_code``): a correct resume changes no number, so it
must not change a run's identity either (tests/test_code_hash.py, tests/test_resume.py).

What one checkpoint holds (one file, written atomically, so a kill while writing leaves the
previous one): the epochs completed; the module's weights (a ``SeedStack``'s stacked weights);
the optimizer's state; what the module accumulated over those epochs (``run_state``: history,
test predictions, the per-example record, the diverged epoch); every random generator (torch's
CPU and CUDA ones, numpy's, Python's) and each training loader's data-order generator
(``TensorBatches.generator``). A resumed fit continues with epoch ``completed + 1``: the weights,
optimizer moments, dropout masks and minibatch order are those the uninterrupted run would have
had, so its ``metrics.csv`` and predictions come out byte-identical (tests/test_resume.py).

When it is taken: at the start of each epoch after the first, i.e. once the previous epoch's
training, evaluation and ``on_train_epoch_end`` (where the module records the epoch) are over and
before the next epoch draws its data order; and once more when training ends. When it is written
(``every_s``, ``trainer.checkpoint_every_s``): at most every ``every_s`` seconds; in between, the
last completed epoch's state is kept in memory (a copy of its tensors: ~12 ms for the largest
default model's 38 MB, against ~70 ms to serialize, checksum and write it), and written at once
when the fit is interrupted: SIGTERM (a preemption, ``kill``), SIGUSR2 (submitit's requeue before a
time limit), Ctrl-C or an error (Lightning's ``on_exception``; ``flush`` for what fails after the
fit). So a short epoch is not followed by a long write, and only ``kill -9`` or a lost node costs
more than the epoch under way: at most ``every_s`` seconds more. ``every_s`` 0: after every epoch.
The file names the runs it belongs to (their config hashes): a checkpoint of another configuration
is never resumed.

Verified before it is resumed. torch's CRC32 of every record is on, and beside the file, written
once it is in place, is ``<name>.sha256``: the SHA-256 of its records' names, offsets, sizes and
CRC32s. On loading, that digest is recomputed and every record is checked against its CRC32
(``zipfile``: torch does not check them), so every byte is covered. A SHA-256 of the whole file
would add 42 ms to each 38 MB save here (``benchmarks/integrity_cost.py``); the records' digest
costs nothing. A checkpoint whose digest is missing or differs (damaged on disk, copied from
elsewhere, a kill between the two writes), that fails a CRC32 or that names other runs is never
resumed: one warning line, and the run starts over from epoch 1 (tests/test_faults.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch

FORMAT = 1


def digest_file(path: str | Path) -> Path:
    """Where the checkpoint's digest is kept: beside it, ``<name>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def records_digest(archive: zipfile.ZipFile) -> str:
    """The SHA-256 of a checkpoint's table of records (name, offset, size, CRC32 of each)."""
    table = [[i.filename, i.header_offset, i.file_size, i.CRC] for i in archive.infolist()]
    return hashlib.sha256(json.dumps(table).encode()).hexdigest()


def _write_atomically(path: Path, data) -> None:
    """``data`` into ``path`` by rename: a kill while writing leaves the previous file, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _members(module) -> list:
    """The classifiers whose epochs a module records: a ``SeedStack``'s members, or the module."""
    return list(getattr(module, "members", [module]))


def _data_order_generators(loader) -> list[torch.Generator]:
    """The data-order generators of a training loader (``TensorBatches``, or a ``SeedBatches`` of them)."""
    loaders = getattr(loader, "loaders", [loader])
    return [part.generator for part in loaders]


def rng_state() -> dict:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": [state[0], torch.from_numpy(state[1].copy()), int(state[2]), int(state[3]), float(state[4])],
        "python": list(random.getstate()),
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class EpochCheckpoint(L.Callback):
    """Save the training state to ``path`` after every epoch (on disk at most every ``every_s``
    seconds, and when the fit is interrupted); resume from it at the start of a fit.

    ``owners``: the config hashes of the runs trained (one, or a vectorized group's), which the
    file must name to be resumed. ``on_resume(epoch)`` is told when a fit continues after ``epoch``;
    ``on_discard(reason)`` when a checkpoint on disk is not resumed (default: a Python warning).
    """

    def __init__(
        self,
        path: str | Path,
        owners: list[str],
        on_resume: Callable[[int], None] | None = None,
        on_discard: Callable[[str], None] | None = None,
        every_s: float = 0.0,
    ):
        self.path = Path(path)
        self.owners = list(owners)
        self.on_resume = on_resume
        self.on_discard = on_discard or _warn
        self.every_s = float(every_s)
        self.saved_epoch = 0  # the epochs the file on disk covers (0: none)
        self.taken_epoch = 0  # the epochs the latest state taken covers (on disk, or ``pending``)
        self.pending = None  # that state when it is not on disk yet (``every_s``)
        self.written_at = time.monotonic()
        self.resumed_from = 0
        self.resumed_digest = None  # the SHA-256 of the checkpoint resumed from

    # -- saving ------------------------------------------------------------------------------
    def state(self, trainer, module) -> dict:
        return {
            "format": FORMAT,
            "owners": self.owners,
            "epoch": trainer.current_epoch,
            "module": module.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in trainer.optimizers],
            "run_state": module.run_state(),
            "rng": rng_state(),
            "data_order": [g.get_state() for g in _data_order_generators(trainer.train_dataloader)],
        }

    def save(self, trainer, module) -> None:
        """Take the state of the epochs completed: written now when ``every_s`` has passed since the
        last write (or is 0), else kept in memory for ``flush``."""
        epoch = trainer.current_epoch
        if epoch == 0 or epoch == self.taken_epoch:
            return
        self.taken_epoch = epoch
        if self.every_s and time.monotonic() - self.written_at < self.every_s:
            self.pending = _copy(self.state(trainer, module))  # training changes the tensors in place
        else:
            self.write(self.state(trainer, module))

    def write(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # then one write: faster than torch.save's many small ones to a file
        torch.save(state, buffer)  # with torch's CRC32 of each record
        digest = records_digest(zipfile.ZipFile(buffer))
        _write_atomically(self.path, buffer.getbuffer())
        _write_atomically(digest_file(self.path), f"{digest}\n".encode())
        self.saved_epoch, self.pending, self.written_at = int(state["epoch"]), None, time.monotonic()

    def flush(self) -> None:
        """Write the state kept in memory, if any: the run is being interrupted. A failure to write
        (a full disk) is one warning line (``on_discard``), never an error in place of the first."""
        if self.pending is None or self.pending["epoch"] <= self.saved_epoch:
            return
        try:
            self.write(self.pending)
        except Exception as error:
            self.on_discard(f"{self.path}: epoch {self.pending['epoch']} not written ({error})")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.save(trainer, pl_module)  # the previous epoch, now completely recorded

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.flush()  # SIGTERM, a requeue's SystemExit, Ctrl-C or an error inside the fit

    # -- resuming ----------------------------------------------------------------------------
    def load(self) -> dict | None:
        """The checkpoint on disk when it is intact and this fit's (its runs, this format); else None,
        said in one line (``on_discard``) when there was a file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            digest = records_digest(archive)
        except (zipfile.BadZipFile, OSError) as error:
            return self.discard(f"not a readable checkpoint ({error})")
        try:
            expected = digest_file(self.path).read_text().split()[0]
        except (FileNotFoundError, IndexError):
            expected = None
        if digest != expected:
            return self.discard(
                f"its records do not match {digest_file(self.path).name} (damaged, or not ours)"
            )
        broken = archive.testzip()  # torch.load does not check the records' CRC32: zipfile does
        if broken is not None:
            return self.discard(f"its record {broken} fails its CRC32 (damaged)")
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # a CRC32 mismatch, another torch: start over
            return self.discard(f"unreadable ({str(error).splitlines()[0][:200]})")
        if state.get("format") != FORMAT or state.get("owners") != self.owners:
            return self.discard(f"it belongs to other runs ({', '.join(map(str, state.get('owners', [])))})")
        self.resumed_digest = digest
        return state

    def discard(self, reason: str) -> None:
        self.on_discard(f"{self.path}: not resumed, {reason}; the run starts over from epoch 1")
        return None

    def on_train_start(self, trainer, pl_module) -> None:
        """Continue after the checkpoint's epoch (Lightning has built the optimizer and the loader,
        and no epoch has drawn its data order yet)."""
        state = self.load()
        if state is None or state["epoch"] == 0:
            return
        epoch = int(state["epoch"])
        pl_module.load_state_dict(state["module"])
        for optimizer, saved in zip(trainer.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        pl_module.restore_run_state(state["run_state"])
        restore_rng_state(state["rng"])
        generators = _data_order_generators(trainer.train_dataloader)
        for generator, saved in zip(generators, state["data_order"], strict=True):
            generator.set_state(saved)
        # The fit loop continues with epoch `epoch + 1` (trainer.current_epoch == epoch).
        for progress in (trainer.fit_loop.epoch_progress.current, trainer.fit_loop.epoch_progress.total):
            progress.ready = progress.started = progress.processed = progress.completed = epoch
        # The epochs restored reach the epoch listeners (MLflow, early stopping) as when trained.
        for member in _members(pl_module):
            for row in member.history:
                for listener in member.epoch_listeners:
                    listener(row)
        self.saved_epoch = self.taken_epoch = self.resumed_from = epoch
        self.written_at = time.monotonic()
        if self.on_resume is not None:
            self.on_resume(epoch)

    def remove(self) -> None:
        self.pending = None
        self.path.unlink(missing_ok=True)
        digest_file(self.path).unlink(missing_ok=True)


def _copy(state):
    """``state`` with every tensor and array copied (the nested dicts and lists rebuilt)."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, np.ndarray):
        return state.copy()
    if isinstance(state, dict):
        return {key: _copy(value) for key, value in state.items()}
    if type(state) in (list, tuple):
        return type(state)(_copy(value) for value in state)
    return state


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=2)
