#!/usr/bin/env bash
# Browse every run in the MLflow UI at http://127.0.0.1:${PORT:-5000} (the project's mlflow.db).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mlflow ui --backend-store-uri "${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}" \
    --host 127.0.0.1 --port "${PORT:-5000}"
