#!/usr/bin/env bash
# One command from a fresh clone to the report: set up, fetch what the team's DVC remote already
# has of the study, then run the DVC pipeline (`dvc repro`), which redoes only what is missing.
#   scripts/study.sh                          # the default study (params.yaml at the project root)
#   scripts/study.sh studies/randomization    # another study directory (its params.yaml + dvc.yaml)
# Further arguments go to dvc repro (e.g. `scripts/study.sh --force`).
# OVERFITLAB_DVC_REMOTE=<dir or s3://... or ssh://...> sets the remote (kept in .dvc/config.local);
# without it, the project's default remote (.dvc/config: ../overfitlab-remote) is used.
# OVERFITLAB_SKIP_SETUP=1 skips scripts/setup.sh (an environment that is set up already).
set -euo pipefail
remote=${OVERFITLAB_DVC_REMOTE:-}
if [[ -n $remote && $remote != *://* && $remote != /* ]]; then
  remote="$PWD/$remote"  # relative to where the command was given
fi
cd "$(dirname "$0")/.."
study="."
if [[ $# -gt 0 && -f "${1%/}/dvc.yaml" ]]; then
  study="${1%/}"
  shift
fi
if [[ ${OVERFITLAB_SKIP_SETUP:-0} != 1 ]]; then
  scripts/setup.sh
fi
[[ -x .venv/bin/dvc ]] && export PATH="$PWD/.venv/bin:$PATH"
command -v dvc >/dev/null || { echo "error: dvc not found: run scripts/setup.sh" >&2; exit 1; }

if [[ -n $remote ]]; then
  dvc remote add --local --force --default team "$remote" >/dev/null
fi

# Pull the outputs that are missing here (a fresh clone), never over ones that exist (an
# interrupted or extended study keeps its runs): dvc repro then redoes only what the remote lacked.
if default=$(dvc remote default 2>/dev/null) && [[ -n $default ]]; then
  mapfile -t missing < <(cd "$study" && dvc status --json dvc.yaml 2>/dev/null | python -c '
import json, os, sys
try:
    stages = json.loads(sys.stdin.read() or "{}")
except ValueError:
    stages = {}
paths = {path for changes in stages.values() for change in changes if isinstance(change, dict)
         for path, state in change.get("changed outs", {}).items()
         if state in ("deleted", "not in cache") and not os.path.exists(path)}
for path in sorted(paths):
    print(path)')
  if [[ ${#missing[@]} -gt 0 ]]; then
    url=$(dvc config "remote.$default.url" 2>/dev/null || true)
    echo "pulling ${#missing[@]} missing outputs from the DVC remote '$default' ($url)"
    # --allow-missing: a remote without them (empty, or not yet pushed) is no error.
    (cd "$study" && dvc pull --allow-missing "${missing[@]}") \
      || echo "warning: dvc pull from '$default' failed; dvc repro computes what is missing" >&2
  fi
fi

(cd "$study" && dvc repro "$@")
echo "report: $(cd "$study" && pwd)/reports/index.html   MLflow UI: scripts/mlflow-ui.sh"
echo "share it: git commit dvc.lock and summary.json, then dvc push && git push (README: Share a study with your team)"
