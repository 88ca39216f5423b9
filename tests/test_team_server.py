"""The team's tracking server for real (scripts/mlflow-server.sh): a PostgreSQL cluster and
`mlflow server` on free local ports, a sweep with two parallel workers logging to it, and every
run, param, per-epoch metric, dataset input and artifact checked through MLflow's REST API (plain
HTTP), then in PostgreSQL itself; restarts keep the data; basic authentication; clear errors.
Both servers are stopped at the end and nothing of them is left running.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT

SCRIPT = str(ROOT / "scripts" / "mlflow-server.sh")
HAVE_POSTGRES = bool(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") or shutil.which("pg_ctl"))


@pytest.fixture(autouse=True, scope="module")
def postgresql_installed():
    """Fail, never skip, without PostgreSQL (pg_ctl, initdb): scripts/test.sh installs it."""
    if not HAVE_POSTGRES:
        pytest.fail(
            "PostgreSQL is not installed (no pg_ctl): run the tests with scripts/test.sh (it installs it "
            "through scripts/system-packages.sh) or apt-get install postgresql",
            pytrace=False,
        )


def run_script(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live (not zombie) processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(proc.name), cmdline.strip()))
    return found


@dataclass
class Server:
    state: Path
    env: dict
    url: str
    pg_port: int

    def script(self, *args: str, timeout: int = 300, **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SCRIPT, *args], env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )

    def api(
        self,
        method: str,
        endpoint: str,
        body: dict | None = None,
        auth: tuple[str, str] | None = None,
        **query,
    ) -> dict:
        """One call of MLflow's REST API, as plain HTTP."""
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def download(self, artifact_uri: str, path: str) -> bytes:
        """An artifact through the server's artifact proxy (mlflow-artifacts:/<exp>/<run>/artifacts)."""
        assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
        location = artifact_uri.removeprefix("mlflow-artifacts:/").strip("/")
        with urllib.request.urlopen(
            f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{location}/{path}", timeout=60
        ) as response:
            return response.read()


@pytest.fixture(scope="module")
def server():
    # Under /tmp, not pytest's private tmp: as root, PostgreSQL runs as `postgres`, which must reach it.
    state = Path(tempfile.mkdtemp(prefix="overfitlab-server-"))
    state.chmod(0o755)
    port, pg_port = free_port(), free_port()
    env = {
        **os.environ,
        "OVERFITLAB_SERVER_DIR": str(state),
        "MLFLOW_PORT": str(port),
        "OVERFITLAB_PG_PORT": str(pg_port),
        "OVERFITLAB_PYTHON": sys.executable,
        "OVERFITLAB_MLFLOW_WORKERS": "2",
        "OVERFITLAB_MLFLOW_AUTH": "0",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    srv = Server(state, env, f"http://127.0.0.1:{port}", pg_port)
    try:
        started = srv.script("start")
        assert started.returncode == 0, started.stdout + started.stderr + log_tail(state)
        assert f"export MLFLOW_TRACKING_URI={srv.url}" in started.stdout
        yield srv
    finally:
        stopped = srv.script("stop", timeout=120)
        left = processes_mentioning(str(state))
        for pid, _ in left:  # never leave a server behind, even when the script failed to stop it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(state, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not left, f"still running after stop: {left}"
        assert not listening(port) and not listening(pg_port)


def log_tail(state: Path) -> str:
    return "".join(
        f"\n--- {log}\n" + log.read_text(errors="replace")[-3000:]
        for log in sorted((state / "logs").glob("*.log"))
        if os.access(log, os.R_OK)
    )


def flatten(prefix: str, obj, out: dict) -> dict:
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = str(obj)
    return out


@pytest.mark.slow
def test_a_parallel_sweep_logs_everything_to_the_team_server(server, project):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    prepared = subprocess.run(
        [sys.executable, "-m", "overfitlab.prepare"], env=env, capture_output=True, text=True
    )
    assert prepared.returncode == 0, prepared.stderr
    start = time.perf_counter()
    sweep = subprocess.run(
        [sys.executable, "-m", "overfitlab.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - start
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:] + log_tail(server.state)
    print(f"sweep of 4 runs x 2 epochs, 2 joblib workers, against the server: {seconds:.1f} s")

    experiment = server.api("GET", "experiments/get-by-name", experiment_name="test-study")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    runs = server.api(
        "POST", "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000}
    )["runs"]
    tags_of = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    parents = [r for r in runs if tags_of[r["info"]["run_id"]].get("overfitlab.kind") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in tags_of[r["info"]["run_id"]]]
    assert len(parents) == 1 and len(children) == 4 and len(runs) == 5
    parent_id = parents[0]["info"]["run_id"]
    for run in runs:
        assert run["info"]["status"] == "FINISHED" and int(run["info"]["end_time"]) > 0, run["info"]

    meta = json.loads((project / "data/prepared/fashion_mnist/meta.json").read_text())
    seen = set()
    for child in children:
        run_id, tags = child["info"]["run_id"], tags_of[child["info"]["run_id"]]
        assert tags["mlflow.parentRunId"] == parent_id
        run_dir = Path(tags["run_dir"])
        run_dir = run_dir if run_dir.is_absolute() else project / run_dir
        done = json.loads((run_dir / "done.json").read_text())
        assert done["mlflow_run_id"] == run_id
        seen.add((tags["model"], tags["seed"]))

        # Every param: the run's resolved config, flattened.
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert params == flatten("", yaml.safe_load((run_dir / "config.yaml").read_text()), {})

        # Every metric's whole history, epoch by epoch, as in the run's metrics.csv.
        table = pd.read_csv(run_dir / "metrics.csv")
        metric_columns = [c for c in table.columns if c not in ("dataset", "model", "seed", "epoch")]
        assert {"train_acc", "val_acc", "test_acc", "test_loss"} <= set(metric_columns)
        for key in metric_columns:
            history = server.api("GET", "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
            got = sorted((int(m["step"]), float(m["value"])) for m in history)
            assert [s for s, _ in got] == table.epoch.tolist() == [1, 2], key
            assert [v for _, v in got] == pytest.approx(table[key].tolist(), rel=1e-6), key

        # The data it trained on, as a dataset input.
        (dataset_input,) = child["inputs"]["dataset_inputs"]
        dataset = dataset_input["dataset"]
        assert dataset["name"] == "fashion_mnist" and dataset["digest"] == meta["data_version"]
        assert json.loads(dataset["profile"])["splits"] == meta["counts"]
        assert {"key": "mlflow.data.context", "value": "training"} in dataset_input["tags"]

        # Both artifacts, byte for byte, through the server's artifact proxy and on its disk.
        listed = server.api("GET", "artifacts/list", run_id=run_id)
        assert {f["path"] for f in listed["files"]} == {"metrics.csv", "config.yaml"}
        for name in ("metrics.csv", "config.yaml"):
            assert server.download(child["info"]["artifact_uri"], name) == (run_dir / name).read_bytes()
            on_disk = server.state / "artifacts" / experiment["experiment_id"] / run_id / "artifacts" / name
            assert on_disk.read_bytes() == (run_dir / name).read_bytes()
    assert seen == {(m, s) for m in ("mlp_300_100", "model_d") for s in ("0", "1")}

    # The runs are in PostgreSQL (not a file store the server fell back to).
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1",
        port=server.pg_port,
        user="mlflow",
        dbname="mlflow",
        passfile=str(server.state / "pgpass"),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM runs WHERE experiment_id = %s", (int(experiment["experiment_id"]),)
            )
            assert cursor.fetchone()[0] == 5
            cursor.execute("SELECT count(DISTINCT step) FROM metrics WHERE key = 'test_acc'")
            assert cursor.fetchone()[0] == 2
    finally:
        connection.close()


@pytest.mark.slow
def test_start_is_idempotent_and_restarts_keep_the_runs_with_or_without_authentication(server):
    first_pid = (server.state / "mlflow.pid").read_text()
    experiment_id = server.api("POST", "experiments/create", {"name": "restart-check"})["experiment_id"]
    run = server.api("POST", "runs/create", {"experiment_id": experiment_id, "start_time": 1})["run"]
    run_id = run["info"]["run_id"]
    server.api(
        "POST", "runs/log-metric", {"run_id": run_id, "key": "acc", "value": 0.5, "timestamp": 1, "step": 3}
    )

    again = server.script("start")
    assert again.returncode == 0 and "already running" in again.stdout
    assert (server.state / "mlflow.pid").read_text() == first_pid
    assert (
        "restart-check: " + f"{server.url}/#/experiments/{experiment_id}?workflowType=machine_learning"
        in again.stdout
    )
    assert server.script("status").returncode == 0

    stopped = server.script("stop")
    assert stopped.returncode == 0 and "PostgreSQL stopped" in stopped.stdout
    status = server.script("status")
    assert status.returncode == 3 and "MLflow server: stopped" in status.stdout, status.stdout
    assert not listening(int(server.url.rsplit(":", 1)[1])) and not listening(server.pg_port)
    assert server.script("stop").returncode == 0  # stopping what is stopped is no error

    try:
        # With basic authentication: the admin's generated password (MLflow ships none) is needed.
        with_auth = server.script("start", OVERFITLAB_MLFLOW_AUTH="1")
        assert with_auth.returncode == 0, with_auth.stdout + with_auth.stderr + log_tail(server.state)
        password = (server.state / "admin-password").read_text().strip()
        assert f"export MLFLOW_TRACKING_PASSWORD={password}" in with_auth.stdout
        with pytest.raises(urllib.error.HTTPError) as denied:
            server.api("GET", "runs/get", run_id=run_id)
        assert denied.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as wrong:
            server.api("GET", "runs/get", run_id=run_id, auth=("admin", "password1234"))
        assert wrong.value.code == 401
        run = server.api("GET", "runs/get", run_id=run_id, auth=("admin", password))["run"]
        assert [(m["key"], m["value"], int(m["step"])) for m in run["data"]["metrics"]] == [("acc", 0.5, 3)]
    finally:
        restarted = server.script("restart", OVERFITLAB_MLFLOW_AUTH="0")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr + log_tail(server.state)
    run = server.api("GET", "runs/get", run_id=run_id)["run"]
    assert run["info"]["experiment_id"] == experiment_id


def test_clear_errors_for_a_busy_port_a_missing_postgresql_and_a_bad_command(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "OVERFITLAB_SERVER_DIR": str(state), "OVERFITLAB_PYTHON": sys.executable}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_script("start", env={**env, "MLFLOW_PORT": str(port)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is in use by another program: set MLFLOW_PORT to a free port"
    )
    assert not (state / "postgres").exists()  # checked before anything is created

    result = run_script("start", env={**env, "PG_BIN": str(tmp_path / "nowhere")})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: PG_BIN={tmp_path / 'nowhere'} has no pg_ctl: point it at PostgreSQL's bin directory"
    )

    result = run_script("launch", env=env)
    assert result.returncode == 1 and result.stderr.strip() == (
        "error: unknown command 'launch': use start, stop, restart, status or env "
        "(scripts/mlflow-server.sh --help)"
    )
    result = run_script("start", env={**env, "MLFLOW_PORT": "http"})
    assert result.returncode == 1 and result.stderr.strip() == "error: MLFLOW_PORT=http is not a port number"

    result = run_script("--help", env=env)  # the script's own header (scripts/lib/service.sh prints it)
    assert result.returncode == 0 and result.stdout.startswith("A team's MLflow tracking server: PostgreSQL")
    assert "PG_BIN " in result.stdout and "set -euo" not in result.stdout and "\n#" not in result.stdout
