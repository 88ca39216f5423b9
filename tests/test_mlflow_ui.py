"""The MLflow UI in a real browser (headless Chromium over the DevTools protocol), as a new user
meets it: a small sweep, scripts/mlflow-ui.sh, the link it prints for the study. The study opens
on its training runs (not MLflow 3's GenAI overview), the runs table lists the sweep's children
with their dataset, and a run's metric charts draw. OVERFITLAB_SCREENSHOTS=<dir> keeps the
screenshots (docs/ has the README's).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from browser import Chromium, chromium_executable
from conftest import ROOT


@pytest.fixture(autouse=True, scope="module")
def chromium_installed():
    """Fail, never skip, without Chromium: scripts/test.sh installs it."""
    if chromium_executable() is None:
        pytest.fail(
            "Chromium is not installed: run the tests with scripts/test.sh (it installs it through "
            "scripts/system-packages.sh) or apt-get install chromium",
            pytrace=False,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ui(project, tmp_path):
    """A finished 2-seed sweep in the project copy's mlflow.db, served by scripts/mlflow-ui.sh;
    yields (the study's link as printed by the script, the project)."""
    from conftest import set_params

    env = {**os.environ, "OVERFITLAB_PYTHON": sys.executable}
    set_params(project, train={"epochs": 3})  # the study's setting: run names without axes
    for args in (
        ["overfitlab.prepare"],
        ["overfitlab.train", "-m", "model=mlp_300_100", "seed=0,1"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "mlflow-ui.sh")],
        text=True,
        start_new_session=True,
        env={**env, "PORT": str(port), "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        output, deadline = [], time.monotonic() + 180
        while not any("test-study: " in line for line in output):
            assert proc.poll() is None and time.monotonic() < deadline, "no study link:\n" + "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        link = next(line for line in output if "test-study: " in line).split("test-study: ", 1)[1].strip()
        yield link, project
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rows_js() -> str:
    """The runs table's rows as text, one per run: the name column and the others side by side."""
    return """(() => {
      const rows = {};
      for (const row of document.querySelectorAll('.ag-row')) {
        const i = row.getAttribute('row-index');
        rows[i] = (rows[i] || '') + ' | ' + row.innerText.replace(/\\n/g, ' | ');
      }
      return Object.keys(rows).sort().map(k => rows[k]);
    })()"""


@pytest.mark.slow
def test_the_study_opens_on_its_training_runs_with_their_dataset_and_charts(ui, tmp_path):
    link, project = ui
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#/experiments/\d+\?workflowType=machine_learning", link), (
        link
    )
    meta = json.loads((project / "data/prepared/fashion_mnist/meta.json").read_text())
    shots = Path(os.environ.get("OVERFITLAB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser = Chromium(tmp_path / "chromium-profile", width=1400, height=720)
    try:
        browser.open(link)
        browser.wait_for("document.body && document.body.innerText.includes('sweep ')", what="the sweep")
        text = browser.text()
        assert "Runs" in text and "Dataset" in text  # the runs table with its Dataset column
        assert "Detect Issues" not in text and "Overview" not in text and "Sessions" not in text  # not GenAI
        assert "mlp_300_100 seed=0" not in text  # children are folded under the sweep until it is opened

        # Open the sweep's row as a user would: its children appear with their dataset.
        browser.evaluate("""[...document.querySelectorAll('.ag-row')]
                            .find(r => r.innerText.includes('sweep ')).querySelector('button').click()""")
        browser.wait_for("document.body.innerText.includes('mlp_300_100 seed=1')", what="the child runs")
        rows = browser.evaluate(rows_js())
        dataset = f"fashion_mnist ({meta['data_version']})"
        children = [r for r in rows if "mlp_300_100 seed=" in r]
        assert len(rows) == 3 and len(children) == 2, rows
        assert all(dataset in r and "Training" in r for r in children), rows
        assert dataset not in next(r for r in rows if "sweep " in r)  # the sweep itself trains on nothing
        browser.evaluate(
            "[...document.querySelectorAll('button')].find(b => "
            "b.getAttribute('aria-label') === 'Close')?.click()"
        )  # the assistant's panel
        time.sleep(1)
        browser.screenshot(shots / "mlflow-ui-runs.png")

        # A run's metric charts, filtered to the accuracies as a user would: each draws the
        # per-epoch values of the run's metrics.csv, epochs as steps.
        run_href = browser.evaluate("""[...document.querySelectorAll('a')]
            .find(a => a.innerText === 'mlp_300_100 seed=0').getAttribute('href')""")
        base = link.split("#")[0]
        browser.open(f"{base}{run_href.split('?')[0]}/model-metrics?workflowType=machine_learning")
        browser.wait_for("document.querySelectorAll('.js-plotly-plot').length >= 2", what="the metric charts")
        browser.type_into('input[placeholder="Search metric charts"]', "_acc")
        accuracies = ["test_acc", "train_acc", "val_acc"]
        drawn = browser.settled(
            """[...document.querySelectorAll('.js-plotly-plot')].map(plot => {
                let box = plot;
                while (box && !/\((\w+)\)/.test(box.innerText)) box = box.parentElement;
                const metric = box ? box.innerText.match(/\((\w+)\)/)[1] : null;
                return [metric, plot.data?.[0]?.x, plot.data?.[0]?.y];
            })""",
            done=lambda charts: (
                sorted(str(metric) for metric, _, _ in charts) == accuracies
                and all(steps for _, steps, _ in charts)
            ),
        )  # the filtered page once it draws the three charts (seen: 3 charts, then 1, while it filtered)
        table = pd.read_csv(project / "runs/fashion_mnist/mlp_300_100/seed=0/metrics.csv")
        assert sorted(str(metric) for metric, _, _ in drawn) == accuracies
        for metric, steps, values in drawn:
            assert steps == table.epoch.tolist() == [1, 2, 3], metric
            assert values == pytest.approx(table[metric].tolist(), rel=1e-6), metric
        browser.evaluate(
            "[...document.querySelectorAll('button')].find(b => "
            "b.getAttribute('aria-label') === 'Close')?.click()"
        )
        time.sleep(1)
        browser.screenshot(shots / "mlflow-ui-metrics.png")
    finally:
        browser.close()
    for name in ("mlflow-ui-runs.png", "mlflow-ui-metrics.png"):
        assert (shots / name).stat().st_size > 20_000  # a rendered page, not a blank one
