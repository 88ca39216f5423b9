"""The sweep's parent run: opened by a Hydra callback on the launching machine before any job starts,
closed when the sweep ends; the seeds' runs find its id in ``OVERFITLAB_PARENT_RUN_ID``."""

from __future__ import annotations

import os
import socket
import time

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .store import client_for

PARENT_RUN_ENV = "OVERFITLAB_PARENT_RUN_ID"


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
            from ..sweep import failures

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
