"""The study's aggregate on its sweep run, logged by the report stage after collect.

Per model and dataset variant the per-epoch mean and 95 % interval of the accuracies and losses as
``agg/...`` step metrics, the summary and the report as artifacts, a Description linking one chart
per metric with one line per model, and a saved view of the UI (``ui_view.save_grouped_view``) that
opens MLflow's own Group by on the sweep's seeds. The store and the experiment are the train
stage's: here they are only opened (``store.open_client``), never created.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .store import open_client, tracking_uri
from .ui_view import chart_scale, grouped_view_page, metric_page, save_grouped_view

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
            f"[{metric}]({metric_page(run_id, experiment_id, means, chart_scale(metric))})"
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
    client = open_client(uri)
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
