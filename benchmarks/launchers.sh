#!/bin/bash
# The train stage's wall time with each launcher, variants interleaved (A B C, A B C, ...) so that a
# change in the machine's load hits them alike. Runs in a temporary copy of the project with the real
# Fashion-MNIST (default study's sizes), every variant from an empty runs/ and MLflow store.
#   bash benchmarks/launchers.sh [REPEATS] [MODELS]      e.g. bash benchmarks/launchers.sh 2 mlp_300_100,cnn_no_pool
# Prints one line per run of the stage: variant, wall seconds, load average before and after.
set -euo pipefail
repeats=${1:-2}
models=${2:-mlp_300_100,cnn_no_pool,deep_network}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/conf" "$root/src" "$root/params.yaml" "$work/"
cd "$work"
python - "$models" <<'PY'
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
params["study"]["models"] = sys.argv[1].split(",")
open("params.yaml", "w").write(yaml.safe_dump(params, sort_keys=False))
PY
export PYTHONPATH="$work/src"
python -m overfitlab.prepare dataset=fashion_mnist > /dev/null
declare -A extra=(
  [sequential]="hydra/launcher=local"                          # 1 process x all cores' threads
  [sequential_1thread]="hydra/launcher=local trainer.threads=1"
  [joblib_2]="hydra/launcher=joblib hydra.launcher.n_jobs=2"   # 2 processes x 1 thread (on 2 cores)
)
for rep in $(seq "$repeats"); do
  for variant in sequential_1thread joblib_2 sequential; do
    rm -rf runs mlflow.db mlartifacts outputs
    before=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    python -m overfitlab.train --multirun optimizer=adam trainer.progress_bar=false ${extra[$variant]} \
      > "log_${variant}_$rep.txt" 2>&1
    end=$(date +%s.%N)
    echo "$rep $variant wall=$(echo "$end - $start" | bc) s runs=$(ls runs/*/*/seed=*/done.json | wc -l)" \
         "load=[$before] -> [$(cut -d' ' -f1-3 /proc/loadavg)] $(date -u +%FT%TZ)"
  done
done
