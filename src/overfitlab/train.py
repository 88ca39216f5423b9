"""Stage ``train``: one run per (dataset, model, seed); a Hydra multirun sweeps the study.

    python -m overfitlab.train -m                                       # the whole study (params.yaml)
    python -m overfitlab.train -m hydra/launcher=parallel               # worker processes, one per core
    python -m overfitlab.train -m hydra/launcher=slurm_gpu              # a SLURM job (and GPU) per run
    python -m overfitlab.train model=cnn_no_pool seed=3 train.epochs=5  # a single run

Each job checks its config, skips a run that is already complete with the same config hash
(``runs.py``), trains it (``training/fitting.py``), writes its files with ``done.json`` last and
mirrors it in MLflow (``tracking.py``). A run ends ``complete``, ``diverged`` (its loss became NaN
or infinite: kept up to the last finite epoch, MLflow FAILED with tag ``diverged``) or ``failed``
(an error: MLflow FAILED, no done-marker, the sweep goes on and the stage exits non-zero at the
end naming it; the next ``dvc repro`` retries it). A signal marks the run KILLED and stops: SIGINT,
SIGTERM, or, in a submitit job (``hydra/launcher=slurm``), the USR2 with which submitit requeues a job
SLURM is about to stop (time limit, preemption); the requeued job trains the run again from scratch.

With ``trainer.vectorize_seeds`` on, the first job of a multirun for a (dataset, model, control,
...) configuration trains all the sweep's seeds of it at once (``fitting.fit_seeds``) and writes
every seed's run as a sequential job would; the later jobs find their runs complete and skip them.
"""

from __future__ import annotations

import copy
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from . import checks, runs, sweep
from .data import controls
from .data.datasets import PreparedDataset, load_prepared
from .errors import ConfigError, exit_on_config_error, require
from .files import atomic_write_json, git_commit
from .study import conf_dir, preflight
from .training import fitting


def validate(cfg: DictConfig) -> None:
    checks.run_config(cfg)


def with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """The same run config with another seed (and whatever depends on it, e.g. paths.run_dir)."""
    other = copy.deepcopy(cfg)
    other.seed = seed
    return other


@dataclass
class Run:
    """One run of the current config: its directory and the hash that keys it."""

    cfg: DictConfig
    identity: dict
    run_dir: Path
    label: str

    @classmethod
    def of(cls, cfg: DictConfig, meta: dict) -> Run:
        return cls(
            cfg,
            runs.identity(cfg, meta),
            Path(cfg.paths.run_dir),
            f"{cfg.data_label} {cfg.model.name} seed={cfg.seed}",
        )

    @property
    def config_hash(self) -> str:
        return runs.config_hash(self.identity)

    def complete(self) -> bool:
        return runs.is_complete(self.run_dir, self.config_hash)


def seed_group(run: Run, data: PreparedDataset, console) -> list[Run]:
    """The sweep's other seeds of this config still to train, to train along with ``run`` (vectorized).

    Empty when vectorizing is off, outside a multirun, or where it cannot be done (said once, why).
    The later jobs of the sweep then find their runs complete and skip them.
    """
    cfg = run.cfg
    seeds = sweep.seeds()
    if not fitting.vectorize_wanted(cfg) or len(seeds) < 2 or cfg.seed not in seeds:
        return []
    reason = fitting.why_not_vectorized(cfg, data)
    if reason:
        if cfg.seed == seeds[0]:
            console.print(
                f"[yellow]trainer.vectorize_seeds: {run.label.rsplit(' ', 1)[0]} trained seed by "
                f"seed: {reason}[/yellow]"
            )
        return []
    others = [Run.of(with_seed(cfg, s), data.meta) for s in seeds if s != cfg.seed]
    require(
        len({run.run_dir, *(o.run_dir for o in others)}) == len(seeds),
        f"trainer.vectorize_seeds: paths.run_dir={cfg.paths.run_dir!r} is the same for every seed",
    )
    return [o for o in others if not o.complete()]


class Killed(BaseException):
    """SIGTERM (``kill``, a scheduler's time limit) turned into an exception, so the run is marked KILLED."""


def _raise_killed(signum, frame):
    raise Killed(f"signal {signum}")


@dataclass
class Job:
    """What every run of one job shares: the data (controls applied), the label noise applied (which
    training labels were drawn and which actually changed), the code version and the console."""

    data: PreparedDataset
    noise: controls.LabelNoise
    commit: str
    console: object


@exit_on_config_error
def train(cfg: DictConfig) -> dict | None:
    """Train the run of ``cfg`` (and its seed group); the run's summary, or ``None`` if it failed."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    validate(cfg)
    data = load_prepared(cfg.paths.prepared)
    n_test = len(data.labels["test"])
    require(
        cfg.trainer.feature_map_image < n_test,
        f"trainer.feature_map_image={cfg.trainer.feature_map_image} but the test split has {n_test} images",
    )
    run = Run.of(cfg, data.meta)
    if run.complete():
        console.print(f"[dim]= {run.label}: already trained with this config ({run.run_dir}), skipped[/dim]")
        return runs.read_done(run.run_dir)
    group = [run] + seed_group(run, data, console)
    noise = controls.apply_controls(data.images, data.labels, data.num_classes, **cfg.control)
    corrupted = noise.changed  # the clean/corrupted accuracy split is on labels that actually changed
    job = Job(data, noise, git_commit(), console)
    loggers = [_start(r, data.meta, job.commit) for r in group]
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # not when a scheduler's library handles it
        signal.signal(signal.SIGTERM, _raise_killed)
    start = time.perf_counter()
    try:
        if len(group) == 1:
            fitted = [fitting.fit(cfg, data, on_epoch=loggers[0].log_epoch, corrupted=corrupted)]
        else:
            fitted = fitting.fit_seeds(
                [r.cfg for r in group], data, [lg.log_epoch for lg in loggers], corrupted=corrupted
            )
    except (KeyboardInterrupt, Killed, SystemExit):
        # Ctrl-C or SIGTERM (which Lightning turns into SystemExit), or a submitit job being requeued
        # (SystemExit after SIGUSR2, preemption or time limit): the run is KILLED, without done.json,
        # and its next attempt (the requeued job, or the next sweep) starts it over.
        for logger in loggers:
            logger.finish([], status="KILLED")
        raise
    except (Exception, ConfigError) as error:
        for r, logger in zip(group, loggers):
            _fail(r, logger, error, job)
        return None
    wall = (time.perf_counter() - start) / len(group)  # with vectorized seeds: each seed's share
    summaries = [_finish(r, logger, result, wall, job) for r, logger, result in zip(group, loggers, fitted)]
    return summaries[0]


def _start(run: Run, meta: dict, commit: str):
    """A fresh run directory (anything half-written or stale removed) and the run's MLflow child run."""
    from .tracking import RunLogger, dataset_of

    cfg = run.cfg
    shutil.rmtree(run.run_dir, ignore_errors=True)  # half-written, failed or from another config
    run.run_dir.mkdir(parents=True)
    tags = {
        "dataset": cfg.data_label,
        "model": cfg.model.name,
        "seed": str(cfg.seed),
        "git_commit": commit,
        "data_version": meta["data_version"],
        "config_hash": run.config_hash,
        "run_key": f"{cfg.data_label}/{cfg.model.name}/seed={cfg.seed}/{run.config_hash}",
        "run_dir": str(run.run_dir),
        "study": cfg.study.name,
    }
    resolved = OmegaConf.to_container(cfg, resolve=True)
    name = f"{cfg.model.name} seed={cfg.seed}"
    return RunLogger(cfg, resolved, tags, run_name=name, dataset=dataset_of(cfg, meta))


def _fail(run: Run, logger, error: BaseException, job: Job) -> None:
    """A run that raised: MLflow FAILED, the error in ``failed.json`` (no done-marker: retried next
    time) and in the sweep's failure list, so the sweep goes on and its end names every failed run."""
    message = f"{type(error).__name__}: {error}"
    record = {
        "run": run.label,
        "run_dir": str(run.run_dir),
        "config_hash": run.config_hash,
        "error": message,
        "traceback": traceback.format_exc(),
    }
    atomic_write_json(run.run_dir / "failed.json", record)
    sweep.record_failure(record, run.config_hash)
    logger.set_tag("error", message[:5000])
    logger.finish([run.run_dir / "failed.json"], status="FAILED")
    job.console.print(f"[red]✗ {run.label} failed: {message}[/red] (details: {run.run_dir / 'failed.json'})")


def _finish(run: Run, logger, fitted: fitting.Fitted, wall: float, job: Job) -> dict:
    """Write a trained run's files (done.json last) and close its MLflow run."""
    from .training.models import conv_feature_maps

    cfg, module, data = run.cfg, fitted.module, job.data
    table = pd.DataFrame(module.history, columns=list(module.history[0]) if module.history else ["epoch"])
    table.insert(0, "seed", int(cfg.seed))
    table.insert(0, "model", cfg.model.name)
    table.insert(0, "dataset", cfg.data_label)
    image_index = int(cfg.trainer.feature_map_image)
    maps = {} if module.diverged else conv_feature_maps(module.net, data.images["test"][image_index].cpu())
    relabelled = job.noise.table() if job.noise.drawn.any() else None  # which labels a control drew
    predictions = torch.cat(module.test_predictions).cpu().numpy() if module.test_predictions else None
    runs.write_files(
        run.run_dir,
        table,
        OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)),
        predictions,
        {"image_index": image_index, **{k: v.numpy().astype("float16") for k, v in maps.items()}}
        if maps
        else None,
        relabelled,
    )
    columns = runs.metric_columns(table.columns)
    final = table.iloc[-1] if len(table) else {}
    status = "diverged" if module.diverged else "complete"
    summary = {
        "dataset": cfg.data_label,
        "model": cfg.model.name,
        "seed": int(cfg.seed),
        "config_hash": run.config_hash,
        "data_version": data.meta["data_version"],
        "git_commit": job.commit,
        "class_names": data.meta["class_names"],
        "n_params": fitted.n_params,
        "epochs": len(table),
        "wall_time_s": round(wall, 3),
        "device": fitted.device,
        "mlflow_run_id": logger.run_id,
        "torch": run.identity["torch"],
        "device_kind": run.identity["device_kind"],
        **job.noise.record(),
        "final": {c: float(final[c]) for c in columns[4:]} if len(table) else {},
    }
    if module.diverged:
        summary |= {"status": status, "diverged_epoch": module.diverged_epoch}
    logger.set_tag("device", fitted.device)
    if module.diverged:
        logger.set_tag("diverged", f"epoch {module.diverged_epoch}")
    logger.finish(
        [run.run_dir / runs.METRICS, run.run_dir / runs.CONFIG],
        status="FAILED" if module.diverged else "FINISHED",
        extra_metrics={
            "n_params": fitted.n_params,
            "wall_time_s": wall,
            "labels_changed_share": job.noise.changed_share,
        },
    )
    runs.write_done(run.run_dir, summary)  # last: marks the run complete (or diverged)
    if module.diverged:
        job.console.print(
            f"[yellow]! {run.label}: diverged at epoch {module.diverged_epoch} (loss not finite); "
            f"kept {len(table)} finite epoch(s)[/yellow]"
        )
    else:
        job.console.print(
            f"[green]✓[/green] {run.label}: test_acc {final['test_acc']:.2%} "
            f"(train_acc {final['train_acc']:.2%}), {fitted.n_params:,} params, {wall:.1f} s "
            f"on {fitted.device}"
        )
    return summary


# params.yaml is read from the working directory (the study), conf/ from the project root.
@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    preflight(sys.argv[1:])
    # Run the function of the imported module, not of __main__: a parallel launcher (joblib, submitit)
    # pickles the task by reference then, instead of by value with this module's globals (torch).
    from overfitlab.train import main as task

    task()
