"""What this machine offers the stages: one answer to "how many CPU cores may I use"."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's or taskset's share),
    not the machine's total: both the decoding workers and the training threads are sized by it."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
