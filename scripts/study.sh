#!/usr/bin/env bash
# One command from a fresh clone to the report: set up, then run the DVC pipeline (`dvc repro`).
#   scripts/study.sh                          # the default study (params.yaml at the project root)
#   scripts/study.sh studies/randomization    # another study directory (its params.yaml + dvc.yaml)
# Further arguments go to dvc repro (e.g. `scripts/study.sh --force`).
set -euo pipefail
cd "$(dirname "$0")/.."
study="."
if [[ $# -gt 0 && -f "${1%/}/dvc.yaml" ]]; then
  study="${1%/}"
  shift
fi
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
(cd "$study" && dvc repro "$@")
echo "report: $(cd "$study" && pwd)/reports/index.html   MLflow UI: scripts/mlflow-ui.sh"
