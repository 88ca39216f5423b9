"""Studies started at once on a fresh SQLite store: one creates its schema, the others wait for it.

MLflow creates a new database's tables (its alembic migrations) on first open; several processes
opening the same fresh file at once raced in those migrations ("table ... already exists"), and a
sweep lost its parent run. ``client_for`` holds a file lock next to the database while it opens the
store and creates the experiment.
"""

from __future__ import annotations

import multiprocessing
import traceback

import pytest
from omegaconf import OmegaConf

PROCESSES = 4


def _open_and_run(uri: str, barrier, results) -> None:
    """A study starting: open the store, create (or find) the experiment, open a run."""
    try:
        from overfitlab.tracking.store import client_for  # imports mlflow: before the barrier

        cfg = OmegaConf.create({"mlflow": {"tracking_uri": uri, "experiment": "raced"}})
        barrier.wait(timeout=300)
        client, experiment_id = client_for(cfg)
        run = client.create_run(experiment_id, run_name="sweep")
        results.put(("ok", experiment_id, run.info.run_id))
    except BaseException:  # noqa: B036 - reported to the parent, which fails the test
        results.put(("error", traceback.format_exc(), None))


@pytest.mark.slow
def test_processes_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=_open_and_run, args=(uri, barrier, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    errors = [detail for status, detail, _ in outcomes if status != "ok"]
    assert not errors, "\n".join(errors)
    assert len({experiment_id for _, experiment_id, _ in outcomes}) == 1

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name == "raced"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert len(runs) == PROCESSES


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sqlite:////data/mlflow.db", "/data/mlflow.db.lock"),
        ("sqlite:///mlflow.db", "mlflow.db.lock"),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("http://mlflow.example:5000", None),
        ("postgresql://user@host/mlflow", None),
        ("file:///tmp/mlruns", None),
    ],
)
def test_only_a_local_sqlite_file_gets_a_lock(uri, expected):
    from overfitlab.tracking.store import _store_lock_path

    path = _store_lock_path(uri)
    assert (str(path) if path else None) == expected
