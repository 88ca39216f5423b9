#!/usr/bin/env bash
# One command from a fresh clone to the report: set up, then run the DVC pipeline (`dvc repro`).
# Extra arguments go to dvc repro (e.g. `scripts/study.sh --force`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
dvc repro "$@"
echo "report: $PWD/reports/index.html   MLflow UI: scripts/mlflow-ui.sh"
