"""Hydra's submitit launchers (hydra-submitit-launcher), made to end a sweep the way the train stage needs.

The jobs, their pickles, log files, signals and requeueing are submitit's and Hydra's; this changes
only how a sweep's jobs are started and awaited (``launch``), selected by ``conf/hydra/launcher/``:

* Every job is awaited, and a job that ended without a result (killed, out of memory, cancelled,
  over its time limit with no requeue left) becomes a failed run of the sweep (``overfitlab.sweep``):
  the other jobs finish, the stage exits 1 naming it, and the next run trains only what is missing.
  Hydra's own ``launch`` raises at the first such job and returns while the others still run, so
  that the next ``dvc repro`` would train their runs a second time alongside them.
* Interrupting the sweep (Ctrl-C) cancels the jobs it submitted, for the same reason.
* What a job wrote to stderr (its run's one-line outcome, warnings, errors) is passed on to the
  sweep's stderr as the job ends, as if it had run in the sweep's process (the full logs stay in the
  sweep's directory, ``.submitit/<job id>/``).
* On SLURM a job that has left the queue without a result (cancelled, killed, over its time limit)
  is noticed from ``squeue``, which needs no accounting database: its state is asked every
  ``OVERFITLAB_SLURM_POLL_S`` seconds (10) and a job seen ended or gone at two polls in a row is a
  failed run. submitit alone asks ``sacct``, at growing intervals (up to 10 min): without
  accounting (slurmdbd) it never learns that such a job ended and the sweep waits forever.
* The local executor starts at most ``array_parallelism`` jobs at once (SLURM's array throttle,
  which submitit's local executor lacks; null: one per core), so that jobs x threads fit the cores.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as stock

log = logging.getLogger(__name__)

# submitit polls a dead job's result file this long before giving up (15 s by default, for the
# caches of a cluster's shared filesystem); a local job's files are on this machine.
LOCAL_RESULT_WAIT_S = 2

POLL_ENV = "OVERFITLAB_SLURM_POLL_S"  # seconds between two squeue calls of a SLURM sweep
POLL_S = 10.0
GONE = "unknown: no longer in SLURM's queue, e.g. cancelled while pending"
# squeue's states of a job that will not run again (a requeued or preempted job is PENDING again;
# squeue lists an ended job for MinJobAge seconds, 300 by default, then not at all).
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
         "REVOKED", "TIMEOUT"}  # fmt: skip


def cores() -> int:
    """Cores this process may use, as a run's threads count them (``overfitlab.machine`` imports no torch,
    so Hydra's plugin discovery stays light)."""
    from overfitlab.machine import cpu_count

    return cpu_count()


class _AwaitEveryJob:
    """``launch`` for both executors: submit, await every job, turn a dead job into a failed run."""

    _EXECUTOR: str
    params: dict
    config: Any

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and len(job_overrides) > 0
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
        jobs: list = []
        try:
            self._submit(job_params, jobs)
            ended = self._await(jobs)
            return [self._result(job, params, ended.get(job.job_id)) for job, params in zip(jobs, job_params)]
        except BaseException:  # interrupted: no job may go on training behind the next attempt's back
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)
            raise

    def _submit(self, job_params: list, jobs: list) -> None:
        raise NotImplementedError

    def _await(self, jobs: list) -> dict[str, str]:
        """Wait for the jobs; those that ended without a result, with their state (here: none, as
        ``job.results()`` learns that from the local executor)."""
        return {}

    def _result(self, job, params, ended: str | None = None) -> JobReturn:
        """The job's own return; for a job that died (``ended``: how, when known), a failed run
        recorded for the sweep's end."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            if ended is not None:
                raise UncompletedJobError(f"job {job.job_id} left the queue without a result ({ended})")
            outcome = job.results()[0]
            _relay(job)
            return outcome
        except (UncompletedJobError, FailedJobError) as error:
            _relay(job)
            overrides, _, idx = params[:3]
            label = " ".join(filter_overrides(overrides))
            tail = [line for line in (job.stderr() or "").splitlines() if line.strip()][-1:]
            reason = f"job {job.job_id} ended without a result (state {ended or job.state})"
            record = {
                "run": label,
                "run_dir": None,
                "config_hash": None,
                "error": reason + (f"; its last stderr line: {tail[0].strip()}" if tail else ""),
                "traceback": f"{error}\n(log: {job.paths.stderr})",
            }
            from overfitlab import sweep

            sweep.record_failure(record, f"job-{idx}")
            log.error(f"#{idx} {label}: {record['error']} (log: {job.paths.stderr})")
            return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)


def _relay(job) -> None:
    text = job.stderr()
    if text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


class LocalLauncher(_AwaitEveryJob, stock.LocalLauncher):
    """Each job a process on this machine, started by submitit, at most ``array_parallelism`` at once."""

    def _submit(self, job_params: list, jobs: list) -> None:
        import submitit

        params = dict(self.params)
        at_once = params.pop("array_parallelism", None) or cores()
        executor = submitit.LocalExecutor(
            params.pop("submitit_folder"), max_num_timeout=params.pop("max_num_timeout", 3)
        )
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        running: list = []
        for args in job_params:
            while len(running) >= at_once:
                running = [job for job in running if not job.done()]
                if len(running) >= at_once:
                    time.sleep(0.2)
            job = executor.submit(self, *args)
            job._results_timeout_s = LOCAL_RESULT_WAIT_S
            jobs.append(job)
            running.append(job)


class SlurmLauncher(_AwaitEveryJob, stock.SlurmLauncher):
    """One SLURM job array (``sbatch``), at most ``array_parallelism`` jobs running at once."""

    def executor(self):
        """submitit's SLURM executor with this config's parameters (mapped as Hydra's launcher maps them)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def _submit(self, job_params: list, jobs: list) -> None:
        jobs.extend(self.executor().map_array(self, *zip(*job_params)))

    def _await(self, jobs: list) -> dict[str, str]:
        """Wait until each job has its result or has left the queue without one (seen ended or gone
        at two squeue polls in a row: a result file written last may take a moment on a shared
        filesystem). Those jobs, with their last state: they are failed runs."""
        poll = float(os.environ.get(POLL_ENV) or POLL_S)
        strikes = {job.job_id: 0 for job in jobs}
        ended: dict[str, str] = {}
        pending = list(jobs)
        next_poll = time.monotonic() + poll
        while pending:
            pending = [job for job in pending if not job.paths.result_pickle.exists()]
            if pending and time.monotonic() >= next_poll:
                states = queue_states({job.job_id.split("_")[0] for job in pending})
                for job in pending if states is not None else []:  # None: squeue failed, ask again
                    state = states.get(job.job_id)
                    if state is not None and state not in ENDED:
                        strikes[job.job_id] = 0
                        continue
                    strikes[job.job_id] += 1
                    if strikes[job.job_id] >= 2 and not job.paths.result_pickle.exists():
                        ended[job.job_id] = state or accounted_state(job.job_id) or GONE
                pending = [job for job in pending if job.job_id not in ended]
                next_poll = time.monotonic() + poll
            if pending:
                time.sleep(min(1.0, poll))
        return ended


def accounted_state(job_id: str) -> str | None:
    """sacct's state of a job (None without accounting, or for a job it never saw start)."""
    import subprocess

    command = [
        "sacct",
        "--noheader",
        "--parsable2",
        "--allocations",
        "--format=JobID,State",
        "--jobs",
        job_id,
    ]
    try:
        listing = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listing.stdout.splitlines() if listing.returncode == 0 else []:
        found, _, state = line.partition("|")
        if found == job_id and state:
            return state.split()[0]  # "CANCELLED by 0": the state
    return None


def queue_states(array_ids: set[str]) -> dict[str, str] | None:
    """squeue's state of each job (``<array>_<task>`` or ``<job>``) of these arrays, ended ones
    included while SLURM still lists them; None when squeue fails (the controller busy or away)."""
    import subprocess

    command = [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        "--format=%i %T",
        "--jobs",
        ",".join(array_ids),
    ]
    try:
        listing = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listing.returncode != 0:
        # an unknown job id (long gone) is an error to squeue: then it simply lists nothing
        return {} if "Invalid job id" in listing.stderr else None
    states = {}
    for line in listing.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        states[job_id] = state.strip()
    return states
