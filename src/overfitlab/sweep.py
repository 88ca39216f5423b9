"""What one sweep (a Hydra multirun: the train stage) shares between its jobs, and how it ends.

Jobs may run in this process, in joblib workers or as SLURM jobs: what they need from the sweep
travels in environment variables set by these callbacks before any job starts (the launchers pass
the environment on), and what the sweep needs back from them is written to files in the sweep's
directory (shared with the jobs on a cluster). Registered in ``conf/train.yaml``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

SEEDS_ENV = "OVERFITLAB_SWEEP_SEEDS"  # the sweep's seed list, for trainer.vectorize_seeds
FAILURES_ENV = "OVERFITLAB_FAILURES_DIR"  # where a job records a failed run


def seeds() -> list[int]:
    return [int(s) for s in os.environ.get(SEEDS_ENV, "").split(",") if s]


def failures_dir(config: DictConfig) -> Path:
    return Path(config.hydra.sweep.dir) / "failed_runs"


def record_failure(record: dict, key: str) -> None:
    """Called by a job: one file per failed run (a job cannot return it to the launcher portably)."""
    from .files import atomic_write_json

    directory = os.environ.get(FAILURES_ENV)
    if directory:
        atomic_write_json(Path(directory) / f"{key}.json", record)


def failures(config: DictConfig) -> list[dict]:
    """The runs of this sweep that failed, as the jobs recorded them."""
    directory = failures_dir(config)
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []


class SweepSeeds(Callback):
    """Tell the jobs of a multirun which seeds the sweep has (for ``trainer.vectorize_seeds``).

    A job's config holds only its own seed; the sweep's seed list (``study.seeds`` or a
    command-line ``seed=...``, which wins as in Hydra's sweeper) is passed on in the environment.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = OmegaConf.to_container(config.hydra.sweeper.params, resolve=True) or {}
        overrides = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
        found: list = []
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if o.startswith("seed=")])
        for override in parsed:
            if override.is_interval_sweep():  # sampled by an optimizing sweeper: no list to share
                found = []
            else:
                found = (
                    list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
                )
        os.environ[SEEDS_ENV] = ",".join(str(s) for s in found)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        os.environ.pop(SEEDS_ENV, None)


class SweepOutcome(Callback):
    """A failed run does not stop the sweep; the sweep's end names every failed run and exits 1,
    so ``dvc repro`` does not lock a partial study (the next one retries only those runs).

    Registered first, so its end runs last (Hydra ends callbacks in reverse order): after the MLflow
    parent run has been closed as FAILED.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        directory = failures_dir(config)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            stale.unlink()
        os.environ[FAILURES_ENV] = str(directory.resolve())

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        os.environ.pop(FAILURES_ENV, None)
        failed = failures(config)
        if failed:
            names = "; ".join(f"{f['run']} ({f['error'].splitlines()[0][:200]})" for f in failed)
            print(
                f"error: {len(failed)} run(s) failed: {names}. Details in each run's failed.json; "
                "fix the cause and run the stage again (finished runs are kept).",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)
