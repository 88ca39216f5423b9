"""One trainer per run: a lock beside each run directory, held while a process trains the run.

Two sweeps over the same runs (started together, or one while the other trains) would otherwise
train each run twice, the second "resuming" from the first's live checkpoint or deleting its
directory mid-write. The lock is ``flock`` on ``.<run dir name>.lock`` next to the run directory
(not inside it: a fresh start empties the directory). The kernel releases it when its holder dies,
so a crashed or killed trainer never keeps a run locked; the holder removes the file when done.
A process that finds a run locked waits for it, then finds it complete and keeps it
(``lifecycle.already_trained``); a vectorized seed group leaves out the seeds locked elsewhere.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_file(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


class RunLock:
    """``acquire()`` (waiting) or ``try_acquire()`` the lock of ``run_dir``; ``release()`` it."""

    def __init__(self, run_dir: str | Path):
        self.path = lock_file(run_dir)
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        return self._acquire(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def acquire(self) -> None:
        self._acquire(fcntl.LOCK_EX)

    def _acquire(self, mode: int) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                os.close(fd)
                return False
            try:  # the file we locked is still the lock (a holder removes it as it releases)
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then retries on a new file
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
