"""The study's aggregate in MLflow (issue 20, item 5): the report stage gives the sweep's parent run
the per-epoch mean and 95 % interval of every model's accuracies and losses as step metrics, the
summary and the report as artifacts, and a Description linking one chart per metric with one line
per model. A real small study (prepare, a train sweep, collect, report, as the stages' commands)
in a real SQLite store; the numbers are checked against the child runs' own MLflow metrics, and
the chart in a real headless Chromium. OVERFITLAB_SCREENSHOTS=<dir> keeps the screenshot.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from browser import Chromium, chromium_executable
from conftest import ROOT, SMALL_STUDY, write_idx
from overfitlab.tracking.aggregate import aggregate_keys, metric_name

MODELS = SMALL_STUDY["study"]["models"]  # mlp_300_100, model_d; 2 seeds, 2 epochs
STUDY = SMALL_STUDY["study"]["name"]


def stage(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A stage's command in the study's directory, as dvc runs it."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=project,
        env={**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The small study through prepare, train (one sweep: 2 models x 2 seeds), collect and report,
    with its MLflow store in the project copy; yields (project, report's stderr, client)."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("aggregate")
    project = tmp / "project"
    project.mkdir()
    for item in ("conf", "src", "dvc.yaml", ".dvcignore"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(
                source, project / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        elif source.exists():
            shutil.copy(source, project / item)
    (project / "params.yaml").write_text(yaml.safe_dump(SMALL_STUDY, sort_keys=False))
    write_idx(tmp / "raw")
    env = {
        "OVERFITLAB_DATA_DIR": str(tmp / "raw"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    stage(project, "overfitlab.prepare", env=env)
    stage(project, "overfitlab.train", "--multirun", "hydra/launcher=local", env=env)
    stage(project, "overfitlab.collect", env=env)
    report = stage(project, "overfitlab.report", env=env)
    yield project, report.stderr, MlflowClient(f"sqlite:///{project}/mlflow.db"), env


def sweep_and_children(client):
    experiment = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    sweeps = [r for r in runs if r.data.tags.get("overfitlab.kind") == "sweep"]
    assert len(sweeps) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweeps[0].info.run_id]
    return experiment, sweeps[0], children


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_the_sweep_run_gets_every_models_mean_and_interval_per_epoch(study):
    project, stderr, client, _ = study
    experiment, sweep, children = sweep_and_children(client)
    assert f"study aggregate logged to MLflow run {sweep.info.run_id}" in stderr, stderr[-2000:]
    assert len(children) == 4
    t = stats.t.ppf(0.975, 1)  # 2 seeds
    for model in MODELS:
        seeds = [c for c in children if c.data.tags["model"] == model]
        assert len(seeds) == 2
        for metric in ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss"):
            # the seeds' own per-epoch values, as MLflow holds them in the child runs
            values = np.array([[v for _, v in history(client, c.info.run_id, metric)] for c in seeds])
            assert values.shape == (2, 2)
            loss = metric.endswith("_loss")
            centre = "gmean" if loss else "mean"
            x = np.log(values) if loss else values
            mean, half = x.mean(axis=0), t * x.std(axis=0, ddof=1) / math.sqrt(2)
            low, high = mean - half, mean + half
            if loss:
                mean, low, high = np.exp(mean), np.exp(low), np.exp(high)
            else:
                low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
            for suffix, expected in ((centre, mean), ("lo", low), ("hi", high)):
                logged = history(client, sweep.info.run_id, f"agg/{model}/{metric}_{suffix}")
                assert [s for s, _ in logged] == [1, 2], (model, metric, suffix)
                assert [v for _, v in logged] == pytest.approx(expected.tolist(), rel=1e-5), (
                    model,
                    metric,
                    suffix,
                )
    keys = set(client.get_run(sweep.info.run_id).data.metrics)
    assert len(keys) == len(MODELS) * 6 * 3, sorted(keys)
    artifacts = {a.path for a in client.list_artifacts(sweep.info.run_id)}
    assert {"summary.csv", "aggregate.csv", "report"} <= artifacts, artifacts
    report = {a.path for a in client.list_artifacts(sweep.info.run_id, "report")}
    assert {"report/index.html", "report/figures"} <= report, report
    figures = {a.path for a in client.list_artifacts(sweep.info.run_id, "report/figures")}
    assert "report/figures/learning_curves.png" in figures and "report/figures/summary.csv" in figures
    summary = Path(client.download_artifacts(sweep.info.run_id, "summary.csv", str(project / "dl")))
    assert summary.read_text() == (project / "reports/figures/summary.csv").read_text()
    note = sweep.data.tags["mlflow.note.content"]
    assert note.startswith("**Study aggregate**") and "[test_acc](#/metric?" in note, note
    # MLflow's own grouping of the sweep's seeds, saved as a view of the experiment and linked
    views = {k: json.loads(v) for k, v in experiment.tags.items() if k.startswith("mlflow.sharedViewState.")}
    assert len(views) == 1, views
    ((key, view),) = views.items()
    state = json.loads(view["state"])
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "model"}]
    assert sweep.info.run_id in state["searchFilter"]
    assert f"viewStateShareKey={key.removeprefix('mlflow.sharedViewState.')}" in note


def test_running_the_report_again_adds_no_metric_value(study):
    project, _, client, env = study
    _, sweep, _ = sweep_and_children(client)
    keys = sorted(client.get_run(sweep.info.run_id).data.metrics)
    before = {k: history(client, sweep.info.run_id, k) for k in keys}
    again = stage(project, "overfitlab.report", env=env)
    assert "study aggregate logged" in again.stderr and "warning" not in again.stderr, again.stderr[-2000:]
    assert {k: history(client, sweep.info.run_id, k) for k in keys} == before
    # Other numbers for a sweep run that has an aggregate: MLflow would keep both, so none is logged.
    client.set_tag(sweep.info.run_id, "overfitlab.aggregate_digest", "0123456789abcdef")
    try:
        other = stage(project, "overfitlab.report", env=env)
        warnings = [line for line in other.stderr.splitlines() if line.startswith("warning: MLflow")]
        assert len(warnings) == 1 and "already holds an aggregate of other numbers" in warnings[0], (
            other.stderr
        )
        assert {k: history(client, sweep.info.run_id, k) for k in keys} == before
    finally:
        client.set_tag(
            sweep.info.run_id, "overfitlab.aggregate_digest", sweep.data.tags["overfitlab.aggregate_digest"]
        )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["server", "store", "experiment"])
def test_without_mlflow_the_report_is_written_with_one_warning(study, tmp_path, where):
    project, _, _, env = study
    uri = {
        "server": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "store": f"sqlite:///{tmp_path}/absent.db",
        "experiment": f"sqlite:///{tmp_path}/other.db",
    }[where]
    if where == "experiment":  # a store without the study's experiment
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).create_experiment("another-study")
    (project / "reports/index.html").unlink()
    start = time.monotonic()
    result = stage(project, "overfitlab.report", env={**env, "MLFLOW_TRACKING_URI": uri})
    assert time.monotonic() - start < 120  # no minutes of retries against a server that is not there
    assert (project / "reports/index.html").is_file()
    warnings = [line for line in result.stderr.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: MLflow: study aggregate not logged: "), (
        result.stderr[-2000:]
    )
    expected = {
        "server": "not reachable",
        "store": "no MLflow store at",
        "experiment": "no MLflow experiment",
    }
    assert expected[where] in warnings[0], warnings
    assert where != "store" or not (tmp_path / "absent.db").exists()  # the store is not created


def test_metric_keys_are_what_mlflow_accepts():
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric_name

    with pytest.raises(MlflowException):  # why names are sanitized: MLflow refuses '+' and '='
        _validate_metric_name("agg/fashion_mnist+lr=0.1/mlp/test_acc_mean")
    assert metric_name("fashion_mnist+lr=0.1") == "fashion_mnist/lr_0.1"
    assert metric_name("fashion_mnist+labels0.2") == "fashion_mnist/labels0.2"
    assert metric_name("x+..+lr=-1e-3") == "x/_/lr_-1e-3"  # no segment that a path would resolve away
    curves = pd.DataFrame(
        {
            "dataset": ["fashion_mnist+lr=0.1", "fashion_mnist+lr=0.01", "fashion_mnist+lr=0.1"],
            "model": ["mlp_300_100", "mlp_300_100", "cnn (wide)"],
            "metric": ["test_acc", "test_acc", "val_loss"],
        }
    )
    keys = aggregate_keys(curves)
    assert keys == [
        "agg/fashion_mnist/lr_0.1/mlp_300_100/test_acc",
        "agg/fashion_mnist/lr_0.01/mlp_300_100/test_acc",
        "agg/fashion_mnist/lr_0.1/cnn__wide_/val_loss",
    ]
    for key in keys:
        _validate_metric_name(f"{key}_mean")
    one = curves.iloc[[0]]
    assert aggregate_keys(one) == ["agg/mlp_300_100/test_acc"]  # one dataset variant: no variant level


@pytest.mark.slow
def test_the_sweep_runs_chart_shows_one_line_per_model(study, tmp_path):
    """The parent run's page, as a user opens it: its Description's link for test_acc opens one
    chart with one line per model, each the logged per-epoch mean."""
    if chromium_executable() is None:
        pytest.fail("Chromium is not installed: run the tests with scripts/test.sh", pytrace=False)
    project, _, client, env = study
    experiment, sweep, _ = sweep_and_children(client)
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "mlflow-ui.sh")],
        cwd=project,
        env={
            **os.environ,
            **env,
            "OVERFITLAB_PYTHON": sys.executable,
            "PORT": str(port),
            "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    shots = Path(os.environ.get("OVERFITLAB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser = None
    try:
        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(base + "health", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the MLflow UI did not start"
                time.sleep(1)
        browser = Chromium(tmp_path / "chromium-profile", width=1400, height=760)
        run = f"#/experiments/{experiment.experiment_id}/runs/{sweep.info.run_id}"
        browser.open(f"{base}{run}?workflowType=machine_learning")
        browser.wait_for(
            "[...document.querySelectorAll('a')].some(a => a.innerText === 'test_acc')",
            what="the Description's links",
        )
        href = browser.evaluate(
            "[...document.querySelectorAll('a')].find(a => a.innerText === 'test_acc').href"
        )
        assert href.startswith(base + "#/metric?"), href
        browser.open(href)
        browser.wait_for("document.querySelectorAll('.js-plotly-plot').length === 1", what="the chart")
        browser.wait_for(
            "document.querySelector('.js-plotly-plot').data.length >= 2", what="the chart's lines"
        )
        traces = browser.evaluate(
            "document.querySelector('.js-plotly-plot').data.map(t => [t.x, t.y, t.line && t.line.dash])"
        )
        lines = {(tuple(x), tuple(y)) for x, y, _ in traces}  # plotly draws a line and its points apart
        assert len(lines) == len(MODELS), traces
        expected = {
            (tuple(s for s, _ in h), tuple(v for _, v in h))
            for h in (history(client, sweep.info.run_id, f"agg/{m}/test_acc_mean") for m in MODELS)
        }
        assert {(x, tuple(round(v, 6) for v in y)) for x, y in lines} == {
            (x, tuple(round(v, 6) for v in y)) for x, y in expected
        }
        text = browser.text()
        for model in MODELS:
            assert f"agg/{model}/test_acc_mean" in text
        browser.evaluate(
            "[...document.querySelectorAll('button')]"
            ".find(b => b.getAttribute('aria-label') === 'Close')?.click()"
        )  # the assistant's panel
        time.sleep(1)
        browser.screenshot(shots / "mlflow-parent-aggregate-test.png")

        # The Description's other link: the sweep's seeds in MLflow's own Group by (a saved view):
        # a group per model, each chart a line per group with its min-max band.
        browser.open(f"{base}{run}?workflowType=machine_learning")
        browser.wait_for(
            "[...document.querySelectorAll('a')].some(a => a.innerText.startsWith('This sweep'))"
        )
        grouped = browser.evaluate(
            "[...document.querySelectorAll('a')].find(a => a.innerText.startsWith('This sweep')).href"
        )
        browser.open(grouped)
        browser.wait_for(
            " && ".join(f"document.body.innerText.includes('Group: {m}')" for m in MODELS), what="the groups"
        )
        browser.wait_for(
            "document.querySelectorAll('.js-plotly-plot').length >= 6", what="the grouped charts"
        )
        time.sleep(2)
        bands = browser.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].slice(0, 6)"
            ".map(p => p.data.filter(t => t.fill && t.x.length > 1).length)"
        )
        assert bands == [len(MODELS)] * 6, bands  # a band per group in each of the six charts
        assert "The sweep's seeds grouped by model" in browser.text()
    finally:
        if browser is not None:
            browser.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (shots / "mlflow-parent-aggregate-test.png").stat().st_size > 20_000
