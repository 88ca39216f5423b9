#!/usr/bin/env bash
# Browse every run in the MLflow UI at http://127.0.0.1:${PORT:-5000} (the project's mlflow.db, or
# $MLFLOW_TRACKING_URI). Once it answers, it prints a link to each study's runs: MLflow 3's UI
# opens experiments in its GenAI view unless the link (or its "Model training" switch) says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${OVERFITLAB_PYTHON:-.venv/bin/python}
[[ -x $PY ]] || { echo "error: $PY not found: run scripts/setup.sh (or set OVERFITLAB_PYTHON)" >&2; exit 1; }
PORT=${PORT:-5000}
[[ $PORT =~ ^[0-9]+$ ]] || { echo "error: PORT=$PORT is not a port number" >&2; exit 2; }
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "error: port $PORT is in use by another program: PORT=<free port> scripts/mlflow-ui.sh" >&2
  exit 1
fi
URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
if [[ $URI == http*://* ]]; then
  echo "error: MLFLOW_TRACKING_URI=$URI is a tracking server, which serves its own UI: open $URI" >&2
  exit 2
fi
# No usage reports to MLflow's developers; no GenAI job runner (7 more processes) for training runs.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
(
  for _ in $(seq 240); do
    if "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null; then
      echo "MLflow UI: http://127.0.0.1:$PORT; the runs of each study:"
      PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m overfitlab.tracking.ui_view "http://127.0.0.1:$PORT" || true
      exit 0
    fi
    sleep 0.5
  done
) &
exec "$PY" -m mlflow ui --backend-store-uri "$URI" --host 127.0.0.1 --port "$PORT"
