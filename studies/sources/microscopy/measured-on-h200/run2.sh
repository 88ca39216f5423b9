#!/usr/bin/env bash
# Device experiment: studies/sources/microscopy's deep network, 3 seeds, full data, with PyTorch's
# default init and with Keras' (Glorot-uniform, zero bias: .gpu/exp/glorot_init.py), side by side.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
tar -xJf .gpu/site.tar.xz -C /tmp
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/.gpu/exp
git checkout -q -- studies 2>/dev/null
echo "git: $(git rev-parse HEAD) dirty-files: $(git status --porcelain --untracked-files=no | wc -l)"
export OVERFITLAB_DATA_DIR=$PWD/.gpu/fashion-mnist
python3 -c "import torch;print('torch',torch.__version__,torch.cuda.get_device_name())"
cp -r studies/sources/microscopy studies/sources/microscopy-glorot
sed -i 's/name: source-microscopy/name: source-microscopy-glorot/' studies/sources/microscopy-glorot/params.yaml
(cd studies/sources/microscopy && python3 -m overfitlab.prepare dataset=fashion_mnist)
cp -r studies/sources/microscopy/data studies/sources/microscopy-glorot/
echo "setup $(( $(date +%s)-t0 )) s"
variant() {  # dir out-name [overrides]
  local dir=$1 name=$2; shift 2
  ( cd "$dir" && python3 -m overfitlab.train --multirun optimizer=adam "$@" 2>&1 | grep -v '━' | sed "s/^/[$name] /"
    python3 -m overfitlab.collect 2>&1 | sed "s/^/[$name] /"
    cp reports/metrics/runs.csv "$OUT/$name-runs.csv"; cp reports/metrics/epochs.csv "$OUT/$name-epochs.csv"
    echo "[$name] done $(( $(date +%s)-t0 )) s" )
}
variant studies/sources/microscopy-glorot glorot model.net._target_=glorot_init.deep_network_glorot model.name=deep_network_glorot &
variant studies/sources/microscopy torchinit &
wait
echo "total $(( $(date +%s)-t0 )) s"
