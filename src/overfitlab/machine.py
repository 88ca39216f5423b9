"""What this machine offers the stages: one answer to "how many CPU cores may I use", and what it
is (``hardware``: the CPU and GPU models a run records)."""

from __future__ import annotations

import os

CPUINFO = "/proc/cpuinfo"


def cpu_count() -> int:
    """Cores this process may run on: its affinity mask (a container's, taskset's or a SLURM job's
    binding), and no more than SLURM allocated (``SLURM_CPUS_PER_TASK``, where the cluster does not
    bind cores); not the machine's total. Decoding workers and training threads are sized by it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores


def hardware() -> dict:
    """What a run ran on, for its record: ``cpu_model`` (``model name`` in /proc/cpuinfo, else
    ``platform.processor()``; None when neither says) and ``gpu`` (CUDA device 0's name, None
    without CUDA). torch is imported here only, where the answer needs it."""
    import platform

    cpu_model = None
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    cpu_model = value.strip()
                    break
    except OSError:  # not Linux
        pass
    cpu_model = cpu_model or platform.processor() or None

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_model": cpu_model, "gpu": gpu}
