"""A run's life around its training: claimed for this process (``runlock``), its directory made
fresh, its MLflow child run opened, trained (``train_group``), and at the end its files written
(``done.json`` last) or its failure recorded, with one console line.

Orchestration only: nothing here changes a run's numbers, so nothing here is in its code hash.
"""

from __future__ import annotations

import shutil
import signal
import time
import traceback
from dataclasses import dataclass

import pandas as pd
import torch
from omegaconf import OmegaConf

from . import launching, measures, runs, sweep
from .axes import dir_parts
from .data import controls
from .data.datasets import PreparedDataset
from .files import atomic_write_json, git_commit
from .runlock import RunLock
from .training import fitting


@dataclass
class Job:
    """What every run of one job shares: the data (controls applied), the label noise applied (which
    training labels were drawn and which actually changed), the code version and the console."""

    data: PreparedDataset
    noise: controls.LabelNoise
    commit: str
    console: object
    checkpoint: object = None  # the EpochCheckpoint of this job's runs (``checkpointing``)


def already_trained(run, console) -> bool:
    """The run is complete and current where it is, or a complete run of its identity elsewhere in
    the study was moved here (``identity.reuse``): said in one line, nothing trains."""
    if run.complete():
        console.print(f"[dim]= {run.label}: already trained with this config, kept: {run.run_dir}[/dim]")
        return True
    found = run.reuse()
    if found is not None:
        console.print(f"[dim]= {run.label}: already trained with this config, moved from {found}[/dim]")
    return found is not None


def claim(run, console) -> RunLock | None:
    """This process's lock on ``run`` (``runlock``), waiting while another process trains it; None
    when the run is complete once the lock is ours (trained meanwhile, or moved here)."""
    lock = RunLock(run.run_dir)
    if not lock.try_acquire():
        console.print(f"[dim]… {run.label}: another process is training it ({lock.path}); waiting[/dim]")
        lock.acquire()
    if already_trained(run, console):
        lock.release()
        return None
    return lock


def claim_if_free(run, console) -> RunLock | None:
    """The lock on ``run`` if no other process holds it and the run is still to train; else None."""
    lock = RunLock(run.run_dir)
    if not lock.try_acquire():
        return None
    if already_trained(run, console):
        lock.release()
        return None
    return lock


def start(run, meta: dict, commit: str):
    """A fresh run directory (anything half-written or stale removed; the checkpoint of this config
    kept, to resume from) and the run's MLflow child run."""
    from .tracking.run_logger import RunLogger, dataset_of
    from .training.checkpoint import digest_file

    cfg = run.cfg
    checkpoint = runs.checkpoint_file(run.run_dir, run.config_hash)
    keep = (checkpoint, digest_file(checkpoint))
    if checkpoint.is_file() and cfg.trainer.get("checkpoint", True):  # interrupted: resumes from there
        for path in run.run_dir.iterdir():
            if path in keep:
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    else:
        shutil.rmtree(run.run_dir, ignore_errors=True)  # half-written, failed or from another config
    run.run_dir.mkdir(parents=True, exist_ok=True)
    axes = {k: str(v) for k, v in run.axis_values.items()}
    tags = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "seed": str(cfg.seed),
        **{f"axis.{k}": v for k, v in axes.items()},
        "git_commit": commit,
        "data_version": meta["data_version"],
        "config_hash": run.config_hash,
        "run_key": f"{run.key}/{run.config_hash}",
        "run_dir": str(run.run_dir),
        "study": cfg.study.name,
    }
    resolved = OmegaConf.to_container(cfg, resolve=True)
    name = " ".join([cfg.model.name, *dir_parts(run.axis_values), f"seed={cfg.seed}"])  # lr=0.1, not train.lr
    return RunLogger(cfg, resolved, tags, run_name=name, dataset=dataset_of(cfg, meta))


def checkpointing(group: list, job: Job) -> list:
    """The callbacks for ``fitting.fit`` / ``fit_seeds`` that save the training state of ``group``
    (one run, or a vectorized seed group) after every epoch in its first run's directory and resume
    from a checkpoint of exactly these runs (``trainer.checkpoint``; none when it is off)."""
    lead = group[0]
    if not lead.cfg.trainer.get("checkpoint", True):
        return []
    from .training.checkpoint import EpochCheckpoint

    path = runs.checkpoint_file(lead.run_dir, lead.config_hash)
    others = f" (and {len(group) - 1} more seed(s))" if len(group) > 1 else ""

    def resumed(epoch: int) -> None:
        job.console.print(f"[cyan]↻ {lead.label}{others}: resumed after epoch {epoch} ({path})[/cyan]")

    def discarded(reason: str) -> None:
        job.console.print(f"[yellow]! {lead.label}{others}: {reason}[/yellow]", highlight=False)

    owners = [r.config_hash for r in group]
    every_s = lead.cfg.trainer.get("checkpoint_every_s", 0)
    job.checkpoint = EpochCheckpoint(path, owners, on_resume=resumed, on_discard=discarded, every_s=every_s)
    return [job.checkpoint]


def finish_all(group: list, loggers: list, fitted: list, wall: float, job: Job) -> list[dict]:
    """``finish`` each run of the group; then its checkpoint is removed (``trainer.keep_checkpoint``
    keeps it)."""
    records = [finish(r, lg, f, wall, job) for r, lg, f in zip(group, loggers, fitted, strict=True)]
    if job.checkpoint is None:
        return records
    if group[0].cfg.trainer.get("keep_checkpoint", False):
        job.checkpoint.flush()  # the final epoch's state may still be only in memory
    else:
        job.checkpoint.remove()
    return records


def fail(run, logger, error: BaseException, job: Job) -> None:
    """A run that raised (training, or writing its final files): its half-written files removed (the
    checkpoint kept, to resume from), the error in ``failed.json`` (no done-marker: retried next time)
    and in the sweep's failure list, MLflow FAILED, one console line. The sweep goes on, and its end
    names every failed run. Each step is tried even if one before it fails (a full disk)."""
    from .training.checkpoint import digest_file

    record = runs.failed_record(run, error, traceback.format_exc())
    checkpoint = runs.checkpoint_file(run.run_dir, run.config_hash)
    keep = {checkpoint, digest_file(checkpoint)}
    steps = [
        ("remove its half-written files", lambda: _clear(run.run_dir, keep)),
        ("write failed.json", lambda: atomic_write_json(run.run_dir / runs.FAILED, record)),
        ("record it for the sweep", lambda: sweep.record_failure(record, run.config_hash)),
        ("tag its MLflow run", lambda: logger.set_tag("error", record["error"][:5000])),
        ("mark its MLflow run FAILED", lambda: logger.finish([], status="FAILED")),
    ]
    problems = []
    for what, step in steps:
        try:
            step()
        except Exception as problem:  # the run's failure is said whatever else fails
            problems.append(f"could not {what}: {str(problem).splitlines()[0][:200]}")
    said = f"details: {run.run_dir / runs.FAILED}" if (run.run_dir / runs.FAILED).exists() else ""
    said = "; ".join(filter(None, [said, *problems]))
    error_line = (record["error"].splitlines() or [""])[0]
    job.console.print(f"[red]✗ {run.label} failed: {error_line}[/red] ({said})", highlight=False)


def _clear(directory, keep: set) -> None:
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path not in keep:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def write_train_examples(run, module, job: Job) -> None:
    """The run's per-example record (``runs.write_train_examples``), with each training example's
    manifest row and its eval-mode prediction after training."""
    from .data import layout

    if not module.example_record:
        return  # diverged in its first epoch: nothing recorded
    manifest = pd.read_csv(layout.manifest_file(run.cfg.paths.prepared), usecols=["example", "split"])
    images, labels = job.data.images["train"], job.data.labels["train"]
    runs.write_train_examples(
        run.run_dir,
        torch.stack(module.example_record).cpu().numpy(),
        manifest.example[manifest.split == "train"].to_numpy(),
        labels.cpu().numpy(),
        module.predict(images, int(run.cfg.trainer.eval_batch_size)).numpy(),
    )


def finish(run, logger, fitted, wall: float, job: Job) -> dict:
    """Write a trained run's files (done.json last) and close its MLflow run."""
    from .training.models.layers import conv_feature_maps

    cfg, module, data = run.cfg, fitted.module, job.data
    table = pd.DataFrame(module.history, columns=list(module.history[0]) if module.history else ["epoch"])
    table.insert(0, "seed", int(cfg.seed))
    table.insert(0, "model", cfg.model.name)
    table.insert(0, "dataset", cfg.dataset.name)
    image_index = int(cfg.trainer.feature_map_image)
    maps = {} if module.diverged else conv_feature_maps(module.net, data.images["test"][image_index].cpu())
    relabelled = job.noise.table() if job.noise.drawn.any() else None  # which labels a control drew
    predictions = torch.cat(module.test_predictions).cpu().numpy() if module.test_predictions else None
    write_train_examples(run, module, job)
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
    record = runs.done_record(
        run, fitted, table, wall, data.meta, job.commit, job.noise.record(), measures.fingerprints()
    )
    record["mlflow_run_id"] = logger.run_id
    if job.checkpoint is not None:  # trained in one go (0), or continued after this epoch
        record["resumed_after_epoch"] = job.checkpoint.resumed_from
        if job.checkpoint.resumed_digest:  # the verified checkpoint it continued from
            record["resumed_checkpoint_sha256"] = job.checkpoint.resumed_digest
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
    runs.write_done(run.run_dir, record)  # last: marks the run complete (or diverged)
    final = record["final"]
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
    return record


class Killed(BaseException):
    """SIGTERM (``kill``, a scheduler's time limit) turned into an exception, so the run is marked KILLED."""


def _on_sigterm(job: Job):
    """The SIGTERM handler while ``job`` trains, and the one it replaces. The last completed epoch's
    state goes to disk first (a scheduler's kill follows its grace period); then what the process
    did before: submitit's handler (it waits for the kill or the requeue), or ``Killed``."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        if job.checkpoint is not None:
            job.checkpoint.flush()
        if callable(previous):
            previous(signum, frame)
        elif previous is not signal.SIG_IGN:
            raise Killed(f"signal {signum}")

    return handler, previous


def train_group(group: list, data: PreparedDataset, console) -> dict | None:
    """Train ``group`` (a run, or a vectorized seed group), whose locks this process holds."""
    cfg = group[0].cfg
    noise = controls.apply_controls(data.images, data.labels, data.num_classes, **cfg.control)
    job = Job(data, noise, git_commit(), console)
    loggers = [start(r, data.meta, job.commit) for r in group]
    handler, previous = _on_sigterm(job)
    signal.signal(signal.SIGTERM, handler)
    try:
        return _train(group, data, job, loggers)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _train(group: list, data: PreparedDataset, job: Job, loggers: list) -> dict | None:
    """Fit the group and write its runs (``finish_all``), or mark them KILLED or failed."""
    cfg = group[0].cfg
    threads = launching.threads(cfg)
    saving = checkpointing(group, job)  # each epoch's state, to resume an interrupted run
    began = time.perf_counter()
    try:
        # the clean/corrupted accuracy split is on labels that actually changed (noise.changed)
        if len(group) == 1:
            fitted = [fitting.fit(cfg, data, loggers[0].log_epoch, saving, job.noise.changed, threads)]
        else:
            on_epochs = [lg.log_epoch for lg in loggers]
            fitted = fitting.fit_seeds(
                [r.cfg for r in group], data, on_epochs, saving, job.noise.changed, threads
            )
        wall = (time.perf_counter() - began) / len(group)  # with vectorized seeds: each seed's share
        return finish_all(group, loggers, fitted, wall, job)[0]
    except (KeyboardInterrupt, Killed, SystemExit):
        # Ctrl-C or SIGTERM (which Lightning turns into SystemExit), or a submitit job being requeued
        # (SystemExit after SIGUSR2, preemption or time limit): the run is KILLED, without done.json,
        # and its next attempt (the requeued job, or the next sweep) resumes it from its checkpoint.
        if job.checkpoint is not None:  # the last epoch's state still in memory goes to disk
            job.checkpoint.flush()
        for logger in loggers:
            logger.finish([], status="KILLED")
        raise
    except Exception as error:  # in training, or writing the final files (a full disk)
        if job.checkpoint is not None:
            job.checkpoint.flush()
        for r, logger in zip(group, loggers, strict=True):
            if not r.complete():
                fail(r, logger, error, job)
        return None
