"""Each run's data as an MLflow dataset input, also when the jobs of a parallel sweep log the same
new dataset at the same moment (MLflow's SQL store then fails the slower insert on its unique key;
before log_dataset retried, 2-worker sweeps died on it)."""

from __future__ import annotations

import json
import threading

from overfitlab.tracking.run_logger import log_dataset


def test_jobs_logging_the_same_new_dataset_at_once_all_get_it(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    dataset = {
        "name": "fashion_mnist+labels0.2",
        "digest": "33b4a4422cd7ce2b",
        "source": "/data/prepared",
        "splits": {"train": 200, "val": 100, "test": 200},
        "num_classes": 10,
        "image_shape": [1, 28, 28],
    }
    for trial in range(5):  # each trial: a new experiment, so the dataset is new to it
        experiment = client.create_experiment(f"study-{trial}")
        runs = [client.create_run(experiment).info.run_id for _ in range(6)]
        barrier, errors = threading.Barrier(len(runs)), []

        def job(run_id: str, barrier=barrier, errors=errors) -> None:
            barrier.wait()
            try:
                log_dataset(client, run_id, dataset)
            except Exception as exc:  # noqa: BLE001 (collected, asserted below)
                errors.append(repr(exc)[:200])

        threads = [threading.Thread(target=job, args=(run_id,)) for run_id in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for run_id in runs:
            (logged,) = client.get_run(run_id).inputs.dataset_inputs
            assert (logged.dataset.name, logged.dataset.digest) == (dataset["name"], dataset["digest"])
            assert json.loads(logged.dataset.profile) == {
                "num_rows": 200,
                "splits": dataset["splits"],
                "num_classes": 10,
            }
            assert json.loads(logged.dataset.source) == {"uri": "/data/prepared"}
            assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "training")]
            assert "[-1, 1, 28, 28]" in logged.dataset.schema
