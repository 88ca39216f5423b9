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

After collect, the report stage gives the sweep run the study's aggregate (``log_study_aggregate``):
per model and dataset variant the per-epoch mean and 95 % interval of the accuracies and losses as
``agg/...`` step metrics, the summary and the report as artifacts, a Description linking one chart
per metric with one line per model, and a saved view of the UI (``save_grouped_view``) that opens
MLflow's own Group by on the sweep's seeds.

Why one file: every MLflow call of the project is here, so a change of MLflow's API (or of the
store) is one file to read; it is orchestration only, outside every run's code hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
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


# ---- the study's aggregate on its sweep run (written by the report stage)

AGGREGATE_PREFIX = "agg"
AGGREGATE_DIGEST_TAG = "overfitlab.aggregate_digest"
NOTE_TAG = "mlflow.note.content"  # the run's Description in the UI
NOTE_TITLE = "**Study aggregate** (written by the report stage)"
STAT_SUFFIXES = {"mean": "mean", "gmean": "gmean", "low": "lo", "high": "hi"}
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_NOTE_LINKS = 6000  # of the Description's links; MLflow cuts a tag value at 8000 characters


class TrackingUnavailable(Exception):
    """Why the study's aggregate could not be logged: one line, said as a warning (the report stands)."""


def metric_name(label: str) -> str:
    """A dataset variant or model name as a part of an MLflow metric key.

    MLflow allows letters, digits, ``_ - . /``, spaces (and ``:`` except on Windows) in a key, and
    no path segment that normalizes away; variant labels have ``+`` and ``=``
    (``fashion_mnist+lr=0.1``). ``+`` (the variant's separator) becomes ``/``, ``=`` and every
    other character outside ``[A-Za-z0-9_.-]`` becomes ``_``, an empty, ``.`` or ``..`` segment
    ``_``: ``fashion_mnist/lr_0.1``.
    """
    text = re.sub(r"[^A-Za-z0-9_.\-/]", "_", str(label).replace("+", "/"))
    return "/".join(p if p not in ("", ".", "..") else "_" for p in text.split("/"))


def aggregate_keys(curves) -> list[str]:
    """The MLflow key of each row of ``tables.study_curves``: ``agg/<model>/<metric>_<stat>``, with
    ``agg/<variant>/<model>/...`` when the study has several dataset variants (datasets or axis
    values); stat ``mean`` (accuracies), ``gmean`` (losses: geometric), ``lo`` and ``hi`` (the 95 %
    interval) are the columns ``mean``, ``low``, ``high``."""
    several = curves["dataset"].nunique() > 1
    names = {}
    for dataset, model in curves[["dataset", "model"]].drop_duplicates().itertuples(index=False):
        name = f"{metric_name(dataset)}/{metric_name(model)}" if several else metric_name(model)
        if name in names.values():
            raise TrackingUnavailable(f"{dataset} / {model} and another pair both become {name!r} in MLflow")
        names[dataset, model] = name
    return [
        f"{AGGREGATE_PREFIX}/{names[d, m]}/{metric}"
        for d, m, metric in curves[["dataset", "model", "metric"]].itertuples(index=False)
    ]


def aggregate_metrics(curves, timestamp: int) -> list:
    """MLflow Metrics of the aggregate: three per row (centre, low, high), step = epoch, all at
    ``timestamp`` so that logging the same numbers again adds nothing (MLflow keeps a metric's
    every (timestamp, step, value) and drops exact repeats)."""
    from mlflow.entities import Metric

    metrics = []
    for key, row in zip(aggregate_keys(curves), curves.itertuples(index=False), strict=True):
        for column, suffix in ((row.stat, STAT_SUFFIXES[row.stat]), ("low", "lo"), ("high", "hi")):
            value = row.mean if column in ("mean", "gmean") else getattr(row, column)
            # 10 significant digits: 0.80398, not the 0.8039799999999999 a mean of fractions gives
            metrics.append(Metric(f"{key}_{suffix}", float(f"{value:.10g}"), timestamp, int(row.epoch)))
    return metrics


def _reachable(uri: str) -> None:
    """Raise TrackingUnavailable for a store that is not there, before MLflow would create it (a
    SQLite file) or retry for minutes (a server that does not answer)."""
    import urllib.error
    import urllib.request

    if uri.startswith("sqlite:///"):
        database = uri[len("sqlite:///") :].split("?", 1)[0]
        if database != ":memory:" and not Path(database).is_file():
            raise TrackingUnavailable(f"no MLflow store at {database} (the train stage creates it)")
    elif uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).close()
        except urllib.error.HTTPError:
            pass  # it answers (a login, a proxy's page): the client's calls say the rest
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingUnavailable(f"MLflow server {uri} not reachable ({reason})") from None


def sweep_run(client, experiment_id: str, study: str, run_ids: list[str]):
    """The study's sweep run to hold its aggregate: of the sweeps (parent runs) of ``study``, the
    latest that is the parent of one of the collected runs (``run_ids``, runs.csv's
    ``mlflow_run_id``): a later sweep that found every run complete trained none. Without run ids
    (runs collected before they were recorded) the latest sweep of the study."""
    sweeps = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`overfitlab.kind` = 'sweep' and tags.study = '{study}'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    if not sweeps:
        raise TrackingUnavailable(f"no sweep run of study {study!r} in MLflow")
    if not run_ids:
        return sweeps[0]
    parents = set()
    for start in range(0, len(run_ids), 100):
        chunk = ", ".join(f"'{r}'" for r in run_ids[start : start + 100])
        for run in client.search_runs(
            [experiment_id], filter_string=f"attributes.run_id IN ({chunk})", max_results=1000
        ):
            parents.add(run.data.tags.get("mlflow.parentRunId"))
    for sweep in sweeps:
        if sweep.info.run_id in parents:
            return sweep
    raise TrackingUnavailable(
        f"none of the {len(run_ids)} collected runs is a child of a sweep run of {study!r}"
    )


VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the UI's saved views (its "Views" menu), experiment tags


def _line_chart(uuid: str, section: str, title: str, keys: list[str], scale: str) -> dict:
    """One line chart of the UI's chart view (its stored form, MLflow 3.17): ``keys`` in one chart."""
    return {
        "uuid": uuid,
        "type": "LINE",
        "runsCountToCompare": 100,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "displayName": title,
        "metricKey": keys[0],
        "selectedMetricKeys": keys,
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": scale,
        "range": {},
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
    }


def save_grouped_view(
    client, experiment_id: str, sweep, group_by: list[str], name: str, metrics: list[str]
) -> str:
    """Save a view of the sweep's child runs in MLflow's own "Group by" (on the tags ``group_by``:
    model, the varying axes, the dataset) in chart mode, with a chart of each of ``metrics`` first,
    as the UI saves one: an experiment tag ``mlflow.sharedViewState.<key>`` holding
    ``{name, createdAt, updatedAt, state}`` (the UI's search facets and view state, MLflow 3.17).
    It lists in the runs page's "Views" menu, and ``grouped_view_page`` opens it. MLflow draws each
    group as the average over its runs with a min-max band (not a confidence interval).
    Returns the key, the same for the same sweep: saving again replaces the view."""
    import hashlib

    run_id = sweep.info.run_id
    key = hashlib.sha256(f"overfitlab grouped view {run_id}".encode()).hexdigest()[:32]
    section = f"{key}-seeds"
    state = {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{run_id}'",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": tag} for tag in group_by],
        },
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "runsHiddenMode": "SHOW_ALL",  # the UI's default draws the first 10 groups only
        "isAccordionReordered": True,
        "compareRunSections": [
            {
                "uuid": section,
                "name": f"The sweep's seeds grouped by {', '.join(group_by)}: MLflow's average, min-max band",
                "display": True,
                "isReordered": True,
                "deleted": False,
                "isGenerated": False,
            }
        ],
        "compareRunCharts": [_line_chart(f"{section}-{m}", section, m, [m], _scale(m)) for m in metrics],
    }
    created = sweep.info.start_time
    envelope = {"name": name, "createdAt": created, "updatedAt": created, "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    return key


def grouped_view_page(experiment_id: str, key: str) -> str:
    """The runs page in chart mode with a saved view (``save_grouped_view``) applied."""
    return (
        f"#/experiments/{experiment_id}/runs?{UI_TRAINING_VIEW}&compareRunsMode=CHART&viewStateShareKey={key}"
    )


def metric_page(run_id: str, experiment_id: str, keys: list[str], scale: str = "linear") -> str:
    """The UI's metric page (``#/metric``) of one run with several of its metrics in one chart
    against the step: here one line per model."""
    from urllib.parse import quote

    def arg(value) -> str:
        return quote(json.dumps(value, separators=(",", ":")), safe="/,:")

    return (
        f"#/metric?runs={arg([run_id])}&metric={arg(keys[0])}&experiments={arg([experiment_id])}"
        f"&plot_metric_keys={arg(keys)}&x_axis=step&y_axis_scale={scale}&show_point=true&{UI_TRAINING_VIEW}"
    )


def _scale(metric: str) -> str:
    """A chart's y scale: losses on a log axis, as the report draws them."""
    return "log" if metric.endswith("_loss") else "linear"


def _means(curves, keys: list[str]) -> dict[str, list[str]]:
    """Per metric, the aggregate keys of its centre line (one per model and dataset variant)."""
    frame = curves.assign(key=keys)
    means = {}
    for metric, rows in frame.groupby("metric", sort=False):
        centre = "gmean" if metric.endswith("_loss") else "mean"
        means[metric] = sorted({f"{k}_{centre}" for k in rows["key"]})
    return means


def _note(
    curves, keys: list[str], run_id: str, experiment_id: str, view: str | None, group_by: list[str]
) -> str:
    """The sweep run's Description: links first (a chart per metric with one line per model; the
    sweep's runs in MLflow's own grouping), then what the agg/ metrics are."""
    if curves["dataset"].nunique() == 1:
        charts = "One chart per metric, one line per model: " + " · ".join(
            f"[{metric}]({metric_page(run_id, experiment_id, means, _scale(metric))})"
            for metric, means in _means(curves, keys).items()
        )
    else:  # a chart per variant (its models' test accuracy): all variants' lines at once are a tangle
        frame = curves.assign(key=keys)
        links = []
        for dataset, rows in frame.groupby("dataset", sort=False):
            means = _means(rows, rows["key"].tolist()).get("test_acc")
            if means:
                links.append(f"[{dataset}]({metric_page(run_id, experiment_id, means)})")
        charts = "Test accuracy, one chart per dataset variant, one line per model: " + " · ".join(links)
    if len(charts) > MAX_NOTE_LINKS:  # links longer than a tag may hold
        charts = "The Model metrics tab has a chart per key (search e.g. `test_acc_mean`)."
    lines = [NOTE_TITLE, "", charts]
    if view:
        lines += [
            "",
            f"[This sweep's runs grouped by {', '.join(group_by)}]({grouped_view_page(experiment_id, view)}) "
            "(a saved view, also in the runs page's Views menu): MLflow's own Group by, the group's "
            "average with a min-max band.",
        ]
    lines += [
        "",
        f"`{AGGREGATE_PREFIX}/<model>/<metric>_mean` (accuracies) and `_gmean` (losses: geometric mean) "
        "are the mean over seeds per epoch (step = epoch), `_lo` / `_hi` its 95 % t-interval, as in the "
        "report's curves; with several dataset variants `agg/<variant>/<model>/...`. "
        "Artifacts: `summary.csv`, `aggregate.csv` (every value with its key), `report/` (the report).",
    ]
    return "\n".join(lines)


def log_study_aggregate(
    study: str,
    curves,
    run_ids: list[str],
    artifacts: dict[str, Path],
    uri: str | None = None,
    group_by: list[str] | None = None,
) -> str:
    """Log the study's aggregate into its sweep run (``sweep_run``): ``curves`` (``tables.
    study_curves``) as step metrics ``agg/...`` (``aggregate_keys``), the files of ``artifacts``
    (artifact path -> file or directory), a Description linking a chart per metric, and, with
    ``group_by`` (the child runs' tags to group on), a saved view of MLflow's own grouping
    (``save_grouped_view``). Returns the sweep run's id.

    Logging again the same numbers adds nothing (same keys, steps, values and timestamp; the
    digest tag short-cuts it). Other numbers for a sweep run that already holds an aggregate are
    not logged: MLflow keeps every value logged, so both would show; TrackingUnavailable says so
    (the artifacts are replaced first). Neither the store nor the experiment is created here: a
    missing one raises TrackingUnavailable.
    """
    import hashlib
    import tempfile

    uri = tracking_uri(uri if uri is not None else os.environ.get("MLFLOW_TRACKING_URI"))
    _reachable(uri)
    import mlflow
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    client = RetryingClient(MlflowClient(uri))
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise TrackingUnavailable(f"no MLflow experiment {study!r} (the train stage creates it)")
    sweep = sweep_run(client, experiment.experiment_id, study, list(run_ids))
    run_id = sweep.info.run_id
    keys = aggregate_keys(curves)
    metrics = aggregate_metrics(curves, timestamp=sweep.info.start_time)
    digest = hashlib.sha256(
        json.dumps([[m.key, m.step, repr(m.value)] for m in metrics]).encode()
    ).hexdigest()[:16]
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "aggregate.csv"
        curves.assign(key=keys).to_csv(table, index=False, float_format="%.6g")
        for path, source in {**artifacts, "aggregate.csv": table}.items():
            folder = str(Path(path).parent) if str(Path(path).parent) != "." else None
            if Path(source).is_dir():
                client.log_artifacts(run_id, str(source), path)
            else:
                client.log_artifact(run_id, str(source), folder)
    logged = sweep.data.tags.get(AGGREGATE_DIGEST_TAG)
    if logged and logged != digest:
        raise TrackingUnavailable(
            f"sweep run {run_id} already holds an aggregate of other numbers; MLflow cannot replace "
            "logged metrics, so it keeps those (its artifacts are the new report's): a new sweep "
            "(the train stage) gets a fresh one"
        )
    if not logged:
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
        client.set_tag(run_id, AGGREGATE_DIGEST_TAG, digest)
    view = None
    if group_by:
        name = f"{study}: {sweep.info.run_name} ({run_id[:8]}) grouped by {', '.join(group_by)}"
        metrics = list(dict.fromkeys(curves["metric"]))
        view = save_grouped_view(client, experiment.experiment_id, sweep, group_by, name, metrics)
    note = sweep.data.tags.get(NOTE_TAG, "")
    if not note or note.startswith(NOTE_TITLE):  # a description the user wrote stays
        client.set_tag(
            run_id, NOTE_TAG, _note(curves, keys, run_id, experiment.experiment_id, view, group_by or [])
        )
    return run_id


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
