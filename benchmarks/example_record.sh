#!/bin/bash
# What the per-example record costs the train stage (issue: <= 5 %): the train stage's wall time with
# the code before the record (REF, a git commit) and with the code of HEAD, interleaved
# (REF HEAD, HEAD REF, ...) so that a change in the machine's load hits both alike; each from an
# empty runs/ and MLflow store, on the real Fashion-MNIST at the default study's sizes (2 000
# training images, 10 epochs), one seed of each of the default study's models, sequential launcher.
#   bash benchmarks/example_record.sh [REPEATS] [REF] [MODELS]
#   e.g. bash benchmarks/example_record.sh 4 d7737eb mlp_300_100,cnn_no_pool
# Prints one line per run (variant, wall seconds, load average) and the median of the paired ratios
# HEAD / REF. The reference differs from HEAD by the whole commit that added the record (training
# batches carry example indices, the record, the final eval-mode predictions over the training set,
# train_examples.npz), so the ratio bounds the record's cost from above.
set -euo pipefail
repeats=${1:-4}
ref=${2:-d7737eb}
models=${3:-mlp_300_100,cnn_no_pool,deep_network}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/REF" >/dev/null 2>&1; git -C "$root" worktree remove --force "$work/HEAD" >/dev/null 2>&1; rm -rf "$work"' EXIT
git -C "$root" worktree add --detach "$work/REF" "$ref" >/dev/null 2>&1
git -C "$root" worktree add --detach "$work/HEAD" HEAD >/dev/null 2>&1
for variant in REF HEAD; do
  (cd "$work/$variant" && PYTHONPATH="$work/$variant/src" python -m overfitlab.prepare dataset=fashion_mnist > /dev/null)
done
run() {  # variant -> wall seconds of its train stage
  cd "$work/$1"
  rm -rf runs mlflow.db mlartifacts outputs
  local start end
  start=$(date +%s.%N)
  PYTHONPATH="$work/$1/src" python -m overfitlab.train --multirun optimizer=adam seed=0 "model=$models" \
    trainer.progress_bar=false hydra/launcher=local > "$work/log_$1.txt" 2>&1
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
ratios=()
for rep in $(seq "$repeats"); do
  if (( rep % 2 )); then order="REF HEAD"; else order="HEAD REF"; fi
  declare -A wall=()
  for variant in $order; do
    before=$(cut -d' ' -f1-3 /proc/loadavg)
    wall[$variant]=$(run "$variant")
    echo "$rep $variant wall=${wall[$variant]} s load=[$before] -> [$(cut -d' ' -f1-3 /proc/loadavg)] $(date -u +%FT%TZ)"
  done
  ratios+=("$(echo "scale=4; ${wall[HEAD]} / ${wall[REF]}" | bc)")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "paired ratios HEAD/REF: %s; median %.3f\n", "'"${ratios[*]}"'", m}'
