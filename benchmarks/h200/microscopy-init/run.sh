#!/usr/bin/env bash
# GPU experiment: studies/sources/microscopy's deep network, 3 seeds, full data, with PyTorch's
# default init (torchinit) and with Keras' (Glorot-uniform, zero bias: glorot_init.py here), side
# by side. Each variant trains in a scratch copy of the study (its params.yaml, renamed) under
# outputs/h200/microscopy-init/<variant>/; studies/sources/microscopy itself is left alone. From
# the project root, on a machine with a CUDA GPU:
#   bash benchmarks/h200/microscopy-init/run.sh 2>&1 | tee init.log
# OUT (default outputs/h200/microscopy-init) receives <variant>-runs.csv and <variant>-epochs.csv.
# The Glorot variant's model, conf/model/deep_network_glorot.yaml (conf/model/deep_network.yaml
# with glorot_init's _target_), is written at the start and removed at the end.
# Fashion-MNIST's IDX files are looked up as the study does (OVERFITLAB_DATA_DIR, data/raw,
# /usr/share/datasets/fashion-mnist). Python: .venv's when there is one.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$root/outputs/h200/microscopy-init   # inside the project: the stages find conf/ above them
OUT=${OUT:-$work}
mkdir -p "$work" "$OUT" && OUT=$(cd "$OUT" && pwd)
[[ -n ${OVERFITLAB_DATA_DIR:-} ]] && OVERFITLAB_DATA_DIR=$(realpath -m "$OVERFITLAB_DATA_DIR") && export OVERFITLAB_DATA_DIR
cd "$root"
[[ -x .venv/bin/python ]] && export PATH="$PWD/.venv/bin:$PATH"
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH}   # glorot_init
echo "git: $(git rev-parse HEAD) dirty-files: $(git status --porcelain --untracked-files=no | wc -l)"
python -c "import torch;print('torch',torch.__version__,torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA GPU')"
glorot_model=$root/conf/model/deep_network_glorot.yaml
trap 'rm -f "$glorot_model"' EXIT
sed -e 's/^name: deep_network$/name: deep_network_glorot/' \
    -e 's/^  _target_: .*/  _target_: glorot_init.deep_network_glorot/' conf/model/deep_network.yaml >"$glorot_model"
grep -q "glorot_init.deep_network_glorot" "$glorot_model" || { echo "error: $glorot_model: no _target_" >&2; exit 1; }
params=studies/sources/microscopy/params.yaml
rm -rf "$work/torchinit" "$work/glorot" && mkdir -p "$work/torchinit" "$work/glorot"
sed 's/^  name: source-microscopy$/  name: source-microscopy-torchinit/' $params >"$work/torchinit/params.yaml"
sed -e 's/^  name: source-microscopy$/  name: source-microscopy-glorot/' \
    -e 's/^  models: \[deep_network\]$/  models: [deep_network_glorot]/' $params >"$work/glorot/params.yaml"
grep -q "models: \[deep_network_glorot\]" "$work/glorot/params.yaml" || { echo "error: $params: no models line" >&2; exit 1; }
(cd "$work/torchinit" && python -m overfitlab.prepare dataset=fashion_mnist) || exit 1
cp -r "$work/torchinit/data" "$work/glorot/"
echo "setup $(( $(date +%s)-t0 )) s"
variant() {  # name (the scratch study under $work)
  local name=$1
  ( cd "$work/$name" && python -m overfitlab.train --multirun optimizer=adam 2>&1 | grep -v '━' | sed "s/^/[$name] /"
    python -m overfitlab.collect 2>&1 | sed "s/^/[$name] /"
    cp reports/metrics/runs.csv "$OUT/$name-runs.csv"; cp reports/metrics/epochs.csv "$OUT/$name-epochs.csv"
    echo "[$name] done $(( $(date +%s)-t0 )) s" )
}
variant glorot &
variant torchinit &
wait
echo "total $(( $(date +%s)-t0 )) s"
