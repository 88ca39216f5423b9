"""A seed's child run: its params, per-epoch metrics, tags and artifacts, and the data it trains on.

Each run logs that data as an MLflow dataset input, so MLflow 3's UI shows training runs with a
Dataset column.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from ..machine import hardware
from .parent_run import PARENT_RUN_ENV
from .store import client_for


def flatten(prefix: str, obj, out: dict) -> dict:
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj
    return out


def dataset_of(cfg: DictConfig, meta: dict) -> dict:
    """The data a run trains on, for ``RunLogger(dataset=...)``: from its config and the prepared
    data's meta.json. The name includes any randomization control (fashion_mnist+labels0.2), since
    the run sees other labels; the digest is the prepared data's ``data_version``."""
    from ..data.controls import control_tag

    size = int(meta["image_size"])
    return {
        "name": cfg.dataset.name + control_tag(cfg.control.label_noise, cfg.control.pixels),
        "digest": str(meta["data_version"]),
        "source": str(Path(cfg.paths.prepared).resolve()),
        "splits": {split: int(n) for split, n in meta["counts"].items()},
        "num_classes": len(meta["class_names"]),
        "image_shape": [int(meta["in_channels"]), size, size],
    }


def dataset_input(dataset: dict):
    """An MLflow DatasetInput (context ``training``) from a ``dataset_of`` dict: name and digest
    for the runs table's Dataset column, the split sizes as its profile, the arrays as its schema."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec

    splits = dataset.get("splits", {})
    profile = {"num_rows": splits.get("train"), "splits": splits, "num_classes": dataset.get("num_classes")}
    schema = None
    if dataset.get("image_shape"):
        schema = json.dumps(
            TensorDatasetSchema(
                features=Schema([TensorSpec(np.dtype("uint8"), (-1, *dataset["image_shape"]), "image")]),
                targets=Schema([TensorSpec(np.dtype("int64"), (-1,), "label")]),
            ).to_dict()
        )
    entity = Dataset(
        name=dataset["name"],
        digest=dataset["digest"],
        source_type="local",
        source=json.dumps({"uri": dataset.get("source", "")}),
        schema=schema,
        profile=json.dumps({k: v for k, v in profile.items() if v is not None}),
    )
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])


def log_dataset(client, run_id: str, dataset: dict, attempts: int = 5) -> None:
    """Log a ``dataset_of`` dict as the run's dataset input. The jobs of a parallel sweep race to
    create the same dataset: MLflow's SQL store inserts it when it does not see it yet, and the
    slower job's insert fails on the unique (experiment, name, digest) key; a retry finds the row
    the faster one wrote and links it."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=[dataset_input(dataset)])
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


# What a scheduler sends mid-run (a preemption, submitit's requeue before a time limit, Ctrl-C). Each
# makes Python raise where it lands: inside an SQLite commit, that left the store locked for every
# later write of the sweep (seen: a requeue landing as an epoch was logged).
INTERRUPTIONS = {signal.SIGTERM, signal.SIGUSR2, signal.SIGINT}


@contextmanager
def signals_held():
    """Hold those signals until the block ends, so an MLflow write completes or never starts: their
    Python handlers (which always run in the main thread, whichever thread the kernel picks) only
    note them meanwhile; then the handlers are restored and each noted signal is raised again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted = []
    handlers = {s: signal.getsignal(s) for s in INTERRUPTIONS}
    handlers = {s: h for s, h in handlers.items() if h is not None}  # None: not set from Python
    for signum in handlers:
        signal.signal(signum, lambda number, frame: noted.append(number))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in noted:
            signal.raise_signal(signum)


class RunLogger:
    """One child run: params from the resolved config, per-epoch metrics (step = epoch), tags, artifacts,
    and (``dataset``, see ``dataset_of``) the data it trains on as an MLflow dataset input."""

    def __init__(
        self,
        cfg: DictConfig,
        resolved: dict,
        tags: dict[str, str],
        run_name: str,
        dataset: dict | None = None,
    ):
        from mlflow.entities import Param

        with signals_held():  # creating the store, the run and its params: as for each epoch
            self.client, experiment_id = client_for(cfg)
            # A run killed mid-way stays RUNNING in MLflow; mark earlier attempts of this run KILLED.
            stale = self.client.search_runs(
                [experiment_id],
                filter_string=(f"tags.run_key = '{tags['run_key']}' and attributes.status = 'RUNNING'"),
            )
            for run in stale:
                self.client.set_terminated(run.info.run_id, "KILLED")
            parent = os.environ.get(PARENT_RUN_ENV)
            if parent:
                tags = {**tags, "mlflow.parentRunId": parent}
            # What it ran on (tags cpu_model, gpu): the runs of a study compared across machines.
            tags = {**{k: v for k, v in hardware().items() if v}, **tags}
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in flatten("", resolved, {}).items()]
            for start in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[start : start + 100])
            if dataset:
                log_dataset(self.client, self.run_id, dataset)

    def log_epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        epoch = int(row["epoch"])
        metrics = [Metric(k, float(v), now, epoch) for k, v in row.items() if k != "epoch"]
        with signals_held():
            self.client.log_batch(self.run_id, metrics=metrics)

    def set_tag(self, key: str, value: str) -> None:
        with signals_held():
            self.client.set_tag(self.run_id, key, value)

    def finish(
        self, artifacts: list[Path], status: str = "FINISHED", extra_metrics: dict | None = None
    ) -> None:
        with signals_held():
            for key, value in (extra_metrics or {}).items():
                self.client.log_metric(self.run_id, key, float(value))
            for path in artifacts:
                self.client.log_artifact(self.run_id, str(path))
            self.client.set_terminated(self.run_id, status)
