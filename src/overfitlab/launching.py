"""How many runs a launcher runs at once, and so how many CPU threads each run gets.

Speed only (orchestration): the thread count changes nothing but the order of float sums, and it
is recorded in each run's ``device``, outside its identity (``axes.SPEED_ONLY_TRAINER_KEYS``).
"""

from __future__ import annotations

from omegaconf import DictConfig

from .machine import cpu_count


def _target(launcher: DictConfig | None) -> str:
    return str(launcher.get("_target_", "")) if launcher is not None else ""


def jobs_at_once(launcher: DictConfig | None) -> int:
    """How many jobs of a sweep Hydra's launcher runs at the same time, on any machine: 1 for the basic
    launcher; joblib's ``n_jobs`` (-1: one per core); submitit's ``array_parallelism`` (SLURM's array
    throttle; ``local_jobs``: null = one per core). Hydra's own ``submitit_local`` starts every job at
    once: at least 2 (every core) is assumed."""
    target = _target(launcher)
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or 1)
        return cpu_count() if n_jobs < 0 else n_jobs
    if "submitit" in target:
        at_once = launcher.get("array_parallelism")
        if at_once:
            return int(at_once)
        return max(2, cpu_count()) if "hydra_submitit_launcher" in target else cpu_count()
    return 1


def parallel_runs(launcher: DictConfig | None) -> int:
    """How many runs the launcher runs at once on this machine: ``jobs_at_once``, except on SLURM, where
    each job runs alone on the cores SLURM allocated it (``cpus_per_task``)."""
    return 1 if "SlurmLauncher" in _target(launcher) else jobs_at_once(launcher)


def threads_per_run(launcher: DictConfig | None) -> int:
    """CPU threads for one run, so that (runs launched at once on this machine) x threads <= cores."""
    return max(1, cpu_count() // parallel_runs(launcher))


def current_launcher() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().launcher if HydraConfig.initialized() else None


def threads(cfg: DictConfig) -> int:
    """``trainer.threads``, or the cores shared out between the runs the launcher runs at once."""
    return int(cfg.trainer.threads or threads_per_run(current_launcher()))


def why_not_vectorized() -> str | None:
    """Why this launcher cannot train a sweep's seeds as one group (None: it can)."""
    if jobs_at_once(current_launcher()) > 1:  # each job would train the group: the same seeds twice
        return "the launcher runs jobs in parallel, which would train the same seeds in two jobs at once"
    return None
