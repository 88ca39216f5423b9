"""MLflow 3.17's UI in its own terms: the saved view that groups a sweep's runs, and links to its pages.

The saved view is hand-built JSON in the form the UI stores its own (an experiment tag
``mlflow.sharedViewState.<key>``); the links open the runs page in the model-training view and the
metric page with several metrics in one chart. ``python -m overfitlab.tracking.ui_view URL
[PUBLIC_URL]`` prints a link to each study's runs on a tracking server (scripts/mlflow-server.sh,
scripts/mlflow-ui.sh).
"""

from __future__ import annotations

import json
import os

# MLflow 3.17's UI chooses between its GenAI and model-training views by a switch kept in the
# browser (GenAI unless changed), not by the experiment's kind; this query opens the training view.
UI_TRAINING_VIEW = "workflowType=machine_learning"
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
        "compareRunCharts": [_line_chart(f"{section}-{m}", section, m, [m], chart_scale(m)) for m in metrics],
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


def chart_scale(metric: str) -> str:
    """A chart's y scale: losses on a log axis, as the report draws them."""
    return "log" if metric.endswith("_loss") else "linear"


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


# python -m overfitlab.tracking.ui_view URL [PUBLIC_URL]: links to each study's runs
if __name__ == "__main__":
    import sys

    print_experiment_pages(*sys.argv[1:3])
