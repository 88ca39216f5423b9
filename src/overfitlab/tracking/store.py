"""The MLflow store: where it is, the lock while a fresh one is created, and a client retried while locked.

The default store is the SQLite file ``mlflow.db`` at the project root (absolute URI), shared by
all studies (``studies/<name>/`` included);
``MLFLOW_TRACKING_URI`` points it elsewhere (a team's tracking server: scripts/mlflow-server.sh).
The database and the experiment are created by the sweep callback before any job starts, so
parallel jobs never race to create them; studies started at once take turns through a file lock
next to a SQLite store (``mlflow.db.lock``), since MLflow creates a fresh database's tables on
first open and concurrent creations collide.

The experiment is tagged as model training (``mlflow.experimentKind``), so MLflow 3's UI shows
training runs rather than its GenAI views.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from ..project import project_root

# The experiment tag MLflow 3's UI reads to tell model training from GenAI experiments
# (values in mlflow/server/js: genai_development, custom_model_development, ...).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def tracking_uri(configured: str | None = None) -> str:
    if configured:
        return configured
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def open_client(uri: str):
    """A client on the store at ``uri`` (retried while SQLite is locked), made MLflow's tracking URI,
    with MLflow's loggers quieted to warnings."""
    import mlflow
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic", "sqlalchemy"):  # after import: mlflow sets up its loggers then
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    return RetryingClient(MlflowClient(uri))


def client_for(cfg: DictConfig):
    """An MlflowClient on the configured store (retried while SQLite is locked), with the study's
    experiment created if missing."""
    uri = tracking_uri(cfg.mlflow.tracking_uri)
    with store_lock(uri):  # MlflowClient opens the store: a fresh database gets its tables here
        client = open_client(uri)
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
