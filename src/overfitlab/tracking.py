"""MLflow: one experiment per study, one parent run per sweep, one child run per seed.

The default store is the SQLite file ``mlflow.db`` at the project root (absolute URI), shared by
all studies (``studies/<name>/`` included);
``MLFLOW_TRACKING_URI`` points it elsewhere. The database and the experiment are created by the
sweep callback before any job starts, so parallel jobs never race to create them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .study import project_root

PARENT_RUN_ENV = "OVERFITLAB_PARENT_RUN_ID"


def tracking_uri(configured: str | None = None) -> str:
    if configured:
        return configured
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def client_for(cfg: DictConfig):
    """An MlflowClient on the configured store, with the study's experiment created if missing."""
    import mlflow
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic", "sqlalchemy"):  # after import: mlflow sets up its loggers then
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:"):
            location = (project_root() / "mlartifacts").as_uri()
        experiment_id = client.create_experiment(cfg.mlflow.experiment, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    return client, experiment_id


class SweepParentRun(Callback):
    """Hydra callback: open a parent MLflow run around a multirun; the seeds become its children."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # Resolve the sweep first: an invalid seed list stops here, before any MLflow run exists.
        OmegaConf.to_container(config.hydra.sweeper.params, resolve=True)
        client, experiment_id = client_for(config)
        _close_abandoned_sweeps(client, experiment_id)
        overrides = [o for o in config.hydra.overrides.task if not o.startswith("seed=")]
        name = " ".join(overrides) or config.study.name
        run = client.create_run(experiment_id, run_name=f"sweep {name}",
                                tags={"overfitlab.kind": "sweep", "study": config.study.name,
                                      "overrides": " ".join(config.hydra.overrides.task),
                                      "overfitlab.host": socket.gethostname(),
                                      "overfitlab.pid": str(os.getpid())})
        self.run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.run_id

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.run_id:
            from .sweep import failures

            client, _ = client_for(config)
            status = "FAILED" if failures(config) else "FINISHED"
            client.set_terminated(self.run_id, status, end_time=int(time.time() * 1000))
            os.environ.pop(PARENT_RUN_ENV, None)


def _close_abandoned_sweeps(client, experiment_id: str) -> None:
    """Mark KILLED the parent runs left RUNNING by a killed sweep on this machine (its process is gone).

    Sweeps of other machines are left alone: from here their process cannot be checked.
    """
    host = socket.gethostname()
    running = client.search_runs([experiment_id], filter_string=(
        f"tags.`overfitlab.kind` = 'sweep' and tags.`overfitlab.host` = '{host}' and attributes.status = 'RUNNING'"))
    for run in running:
        pid = int(run.data.tags.get("overfitlab.pid", "0") or 0)
        if pid and not _alive(pid):
            client.set_terminated(run.info.run_id, "KILLED")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def flatten(prefix: str, obj, out: dict) -> dict:
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj
    return out


class RunLogger:
    """One child run: params from the resolved config, per-epoch metrics (step = epoch), tags, artifacts."""

    def __init__(self, cfg: DictConfig, resolved: dict, tags: dict[str, str], run_name: str):
        from mlflow.entities import Param

        self.client, experiment_id = client_for(cfg)
        # A run killed mid-way stays RUNNING in MLflow; mark earlier attempts of this run KILLED.
        stale = self.client.search_runs([experiment_id], filter_string=(
            f"tags.run_key = '{tags['run_key']}' and attributes.status = 'RUNNING'"))
        for run in stale:
            self.client.set_terminated(run.info.run_id, "KILLED")
        parent = os.environ.get(PARENT_RUN_ENV)
        if parent:
            tags = {**tags, "mlflow.parentRunId": parent}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flatten("", resolved, {}).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log_epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        epoch = int(row["epoch"])
        metrics = [Metric(k, float(v), now, epoch) for k, v in row.items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self, artifacts: list[Path], status: str = "FINISHED", extra_metrics: dict | None = None) -> None:
        for key, value in (extra_metrics or {}).items():
            self.client.log_metric(self.run_id, key, float(value))
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)
