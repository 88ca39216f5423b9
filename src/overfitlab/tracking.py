"""MLflow: one experiment per study, one parent run per sweep, one child run per seed.

The default store is the SQLite file ``mlflow.db`` at the project root (absolute URI), shared by
all studies (``studies/<name>/`` included);
``MLFLOW_TRACKING_URI`` points it elsewhere (a team's tracking server: scripts/mlflow-server.sh).
The database and the experiment are created by the sweep callback before any job starts, so
parallel jobs never race to create them; studies started at once take turns through a file lock
next to a SQLite store (``mlflow.db.lock``), since MLflow creates a fresh database's tables on
first open and concurrent creations collide.

The experiment is tagged as model training (``mlflow.experimentKind``) and each run logs the data
it trains on as an MLflow dataset input, so MLflow 3's UI shows training runs with a Dataset
column rather than its GenAI views.

Why one file: every MLflow call of the project is here, so a change of MLflow's API (or of the
store) is one file to read; it is orchestration only, outside every run's code hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .machine import hardware
from .project import project_root

PARENT_RUN_ENV = "OVERFITLAB_PARENT_RUN_ID"
# The experiment tag MLflow 3's UI reads to tell model training from GenAI experiments
# (values in mlflow/server/js: genai_development, custom_model_development, ...).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def tracking_uri(configured: str | None = None) -> str:
    if configured:
        return configured
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def client_for(cfg: DictConfig):
    """An MlflowClient on the configured store (retried while SQLite is locked), with the study's
    experiment created if missing."""
    import mlflow
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic", "sqlalchemy"):  # after import: mlflow sets up its loggers then
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):  # MlflowClient opens the store: a fresh database gets its tables here
        client = RetryingClient(MlflowClient(uri))
        experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
        if experiment is None:
            location = None
            if uri.startswith("sqlite:"):
                location = (project_root() / "mlartifacts").as_uri()
            experiment_id = client.create_experiment(
                cfg.mlflow.experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
            )
        else:
            experiment_id = experiment.experiment_id
            if EXPERIMENT_KIND_TAG not in experiment.tags:  # created before the tag; a user's choice stays
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return client, experiment_id


def _store_lock_path(uri: str) -> Path | None:
    """The lock file of a local SQLite store, ``<database>.lock`` beside it; None for other stores
    (a tracking server, PostgreSQL, an in-memory database), whose server serializes creation."""
    if not uri.startswith("sqlite:///"):
        return None
    database = uri[len("sqlite:///") :].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.lock")


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an inter-process lock (``flock``) on a local SQLite store's lock file while opening it.

    MLflow runs its schema migrations on the first open of a fresh database, unguarded: processes
    opening one at once (two studies started together) collide ("table ... already exists",
    "duplicate column name") and one fails. Other stores, and places where no lock file can be
    written (no ``fcntl``, a read-only directory), go without the lock.
    """
    path = _store_lock_path(uri)
    try:
        import fcntl

        handle = open(path, "a") if path is not None else None  # closed below
    except (ImportError, OSError):
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        run = client.create_run(
            experiment_id,
            run_name=f"sweep {name}",
            tags={
                "overfitlab.kind": "sweep",
                "study": config.study.name,
                "overrides": " ".join(config.hydra.overrides.task),
                "overfitlab.host": socket.gethostname(),
                "overfitlab.pid": str(os.getpid()),
            },
        )
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
    running = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`overfitlab.kind` = 'sweep' and tags.`overfitlab.host` = '{host}' "
            "and attributes.status = 'RUNNING'"
        ),
    )
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


def dataset_of(cfg: DictConfig, meta: dict) -> dict:
    """The data a run trains on, for ``RunLogger(dataset=...)``: from its config and the prepared
    data's meta.json. The name includes any randomization control (fashion_mnist+labels0.2), since
    the run sees other labels; the digest is the prepared data's ``data_version``."""
    from .data.controls import control_tag

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


class RetryingClient:
    """An MlflowClient whose calls are retried while a SQLite store is locked by another writer.

    SQLite lets one writer in at a time; the jobs of a parallel sweep (joblib workers, local
    submitit jobs) share mlflow.db and can find it locked for longer than its busy timeout. Such a
    call is retried with growing pauses (~30 s in all) instead of failing the run.
    """

    ATTEMPTS = 8

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            for attempt in range(self.ATTEMPTS):
                try:
                    return method(*args, **kwargs)
                except Exception as error:  # MlflowException or SQLAlchemy's OperationalError
                    if "database is locked" not in str(error) or attempt == self.ATTEMPTS - 1:
                        raise
                    time.sleep(0.25 * 2**attempt)
            return None

        return call


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
        self.client.log_batch(self.run_id, metrics=metrics)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(
        self, artifacts: list[Path], status: str = "FINISHED", extra_metrics: dict | None = None
    ) -> None:
        for key, value in (extra_metrics or {}).items():
            self.client.log_metric(self.run_id, key, float(value))
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)


# MLflow 3.17's UI chooses between its GenAI and model-training views by a switch kept in the
# browser (GenAI unless changed), not by the experiment's kind; this query opens the training view.
UI_TRAINING_VIEW = "workflowType=machine_learning"


def experiment_page(server: str, experiment_id: str) -> str:
    """The runs page of an experiment in the MLflow UI at ``server``, in the model-training view."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}?{UI_TRAINING_VIEW}"


def print_experiment_pages(server: str, public: str | None = None) -> None:
    """Print a link to each study's runs on a tracking server, asked at ``server`` and linked at
    ``public`` (its address for others; default ``server``). Credentials: MLFLOW_TRACKING_USERNAME
    and MLFLOW_TRACKING_PASSWORD, as the MLflow client reads them."""
    import base64
    import urllib.request

    server = server.rstrip("/")
    request = urllib.request.Request(f"{server}/api/2.0/mlflow/experiments/search?max_results=1000")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        experiments = json.load(response).get("experiments", [])
    public = public or server
    studies = sorted((e for e in experiments if e["name"] != "Default"), key=lambda e: e["name"])
    if not studies:
        print(f"  no studies yet: run one with MLFLOW_TRACKING_URI={public}")
    for experiment in studies:
        print(f"  {experiment['name']}: {experiment_page(public, experiment['experiment_id'])}")


if __name__ == "__main__":  # python -m overfitlab.tracking URL [PUBLIC_URL]: links to each study's runs
    import sys

    print_experiment_pages(*sys.argv[1:3])
