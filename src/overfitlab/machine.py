"""What this machine offers the stages: one answer to "how many CPU cores may I use"."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """Cores this process may run on: its affinity mask (a container's, taskset's or a SLURM job's
    binding), and no more than SLURM allocated (``SLURM_CPUS_PER_TASK``, where the cluster does not
    bind cores); not the machine's total. Decoding workers and training threads are sized by it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores
