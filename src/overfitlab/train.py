"""Stage ``train``: one run per (dataset, model, axis values, seed); a Hydra multirun sweeps the study.

    python -m overfitlab.train -m                                       # the whole study (params.yaml)
    python -m overfitlab.train -m hydra/launcher=parallel               # worker processes, one per core
    python -m overfitlab.train -m hydra/launcher=slurm_gpu              # a SLURM job (and GPU) per run
    python -m overfitlab.train -m train.lr=0.01,0.1                     # a key swept here is an axis too
    python -m overfitlab.train model=cnn_no_pool seed=3 train.epochs=5  # a single run

Each job checks its config, skips a run that is already complete with the same config hash
(``runs.py``), trains it (``training/fitting.py``) and writes its files with ``done.json`` last,
mirrored in MLflow (``lifecycle.py``). A run ends ``complete``, ``diverged`` (its loss became NaN
or infinite: kept up to the last finite epoch, MLflow FAILED with tag ``diverged``) or ``failed``
(an error: MLflow FAILED, no done-marker, the sweep goes on and the stage exits non-zero at the
end naming it; the next ``dvc repro`` retries it). A signal marks the run KILLED and stops: SIGINT,
SIGTERM, or, in a submitit job (``hydra/launcher=slurm``), the USR2 with which submitit requeues a job
SLURM is about to stop (time limit, preemption). Each epoch's training state is saved in the run
directory (``trainer.checkpoint``, ``training/checkpoint.py``): the requeued job, or the next sweep
after a kill, resumes the run from its last completed epoch, with an uninterrupted run's numbers.

With ``trainer.vectorize_seeds`` on, the first job of a multirun for one configuration trains all
the sweep's seeds of it at once (``fitting.fit_seeds``) and writes every seed's run as a sequential
job would; the later jobs find their runs complete and skip them.
"""

from __future__ import annotations

import copy
import sys
import traceback

import hydra
from omegaconf import DictConfig

from . import identity, launching, lifecycle, runs, sweep
from .data.datasets import PreparedDataset, load_prepared
from .data.verify import verify_prepared
from .errors import ConfigError, exit_on_config_error, require
from .project import conf_dir
from .run_rules import check_run_config
from .study import preflight
from .training import fitting


def seed_group(run: identity.Run, data: PreparedDataset, console, locks: list) -> list[identity.Run]:
    """The sweep's other seeds of this config still to train, to train along with ``run`` (vectorized),
    each locked for this process (their locks appended to ``locks``; a seed another process is
    training is left to it).

    Empty when vectorizing is off, outside a multirun, or where it cannot be done (said once, why).
    The later jobs of the sweep then find their runs complete and skip them.
    """
    cfg = run.cfg
    seeds = sweep.seeds()
    if not fitting.vectorize_wanted(cfg) or len(seeds) < 2 or cfg.seed not in seeds:
        return []
    reason = fitting.why_not_vectorized(cfg, data) or launching.why_not_vectorized()
    if reason:
        if cfg.seed == seeds[0]:
            console.print(
                f"[yellow]trainer.vectorize_seeds: {run.key} trained seed by seed: {reason}[/yellow]"
            )
        return []
    others = []
    for seed in (s for s in seeds if s != cfg.seed):
        other = copy.deepcopy(cfg)
        other.seed = seed  # and whatever depends on it, e.g. paths.run_dir
        others.append(identity.Run.of(other, data.meta))
    require(
        len({run.run_dir, *(o.run_dir for o in others)}) == len(seeds),
        f"trainer.vectorize_seeds: paths.run_dir={cfg.paths.run_dir!r} is the same for every seed",
    )
    group = []
    for other in others:
        lock = lifecycle.claim_if_free(other, console)
        if lock is not None:
            locks.append(lock)
            group.append(other)
    return group


@exit_on_config_error
def train(cfg: DictConfig) -> dict | None:
    """Train the run of ``cfg`` (and its seed group); the run's record, or ``None`` if it failed."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    check_run_config(cfg)
    verify_prepared(cfg.paths.prepared)  # the arrays are those meta.json's data_version names
    data = load_prepared(cfg.paths.prepared)
    n_test = len(data.labels["test"])
    require(
        cfg.trainer.feature_map_image < n_test,
        f"trainer.feature_map_image={cfg.trainer.feature_map_image} but the test split has {n_test} images",
    )
    run = identity.Run.of(cfg, data.meta)
    lock = lifecycle.claim(run, console)  # one trainer per run: waits while another process trains it
    if lock is None:
        return runs.read_done(run.run_dir)
    locks = [lock]
    try:
        return lifecycle.train_group([run] + seed_group(run, data, console, locks), data, console)
    finally:
        for held in locks:
            held.release()


# params.yaml is read from the working directory (the study), conf/ from the project root.
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # A sweep's failures end it non-zero in sweep.SweepOutcome, after every run; a single run here.
    if HydraConfig.get().mode == RunMode.RUN:
        if train(cfg) is None:
            sys.exit(1)
        return
    try:  # in a sweep, one job's error (a bad combination of settings) fails that job only
        train.__wrapped__(cfg)
    except Exception as error:  # training's own errors are recorded per run, in lifecycle.fail
        if not isinstance(error, ConfigError):
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr, flush=True)
        job = f"job {HydraConfig.get().job.num} ({cfg.model.name} seed={cfg.seed})"
        record = {"run": job, "error": f"{type(error).__name__}: {error}"}
        sweep.record_failure(record, f"job-{HydraConfig.get().job.num}")


if __name__ == "__main__":
    sys.argv[1:] = preflight(sys.argv[1:])  # the study's axes become sweep overrides; typos stop here
    # Run the function of the imported module, not of __main__: a parallel launcher (joblib, submitit)
    # pickles the task by reference then, instead of by value with this module's globals (torch).
    from overfitlab.train import main as task

    task()
