"""MLflow under parallel writers: a SQLite store locked by another writer is waited for, not fatal."""

import sqlite3
import threading
import time

import pytest
from omegaconf import OmegaConf

from overfitlab.tracking.store import client_for

pytestmark = pytest.mark.slow  # waits out a held lock


def test_a_call_on_a_locked_sqlite_store_waits_for_the_lock(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "mlflow.db"
    cfg = OmegaConf.create({"mlflow": {"tracking_uri": f"sqlite:///{db}", "experiment": "locked"}})
    client, experiment_id = client_for(cfg)
    run_id = client.create_run(experiment_id).info.run_id
    # Another writer holds the write lock longer than the busy timeout MLflow gives SQLite (20 s).
    holder = sqlite3.connect(db, timeout=0, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    released = threading.Timer(24.0, lambda: holder.execute("COMMIT"))
    released.start()
    start = time.perf_counter()
    try:
        client.log_metric(run_id, "test_acc", 0.5, step=1)
    finally:
        released.join()
        holder.close()
    assert time.perf_counter() - start >= 23.5  # it waited for the lock instead of failing
    assert [m.value for m in client.get_metric_history(run_id, "test_acc")] == [0.5]
