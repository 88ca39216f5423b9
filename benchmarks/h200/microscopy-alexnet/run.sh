#!/usr/bin/env bash
# GPU run: the microscopy study's AlexNet clone on full Fashion-MNIST, 3 seeds, the study's own
# stage commands (dvc.yaml) without DVC, in studies/sources/microscopy-alexnet (its data/, runs/
# and reports/ are written there). From the project root, on a machine with a CUDA GPU:
#   bash benchmarks/h200/microscopy-alexnet/run.sh 2>&1 | tee alexnet.log
# Fashion-MNIST's IDX files are looked up as the study does (OVERFITLAB_DATA_DIR, data/raw,
# /usr/share/datasets/fashion-mnist). OUT (default outputs/h200/microscopy-alexnet) receives the
# study's runs.csv, epochs.csv and summary.json; LAUNCHER (default parallel: 3 seeds in 3 worker
# processes) is the Hydra launcher (conf/hydra/launcher/). Python: .venv's when there is one.
set -euo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
OUT=${OUT:-$root/outputs/h200/microscopy-alexnet}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
[[ -n ${OVERFITLAB_DATA_DIR:-} ]] && OVERFITLAB_DATA_DIR=$(realpath -m "$OVERFITLAB_DATA_DIR") && export OVERFITLAB_DATA_DIR
cd "$root"
[[ -x .venv/bin/python ]] && export PATH="$PWD/.venv/bin:$PATH"
echo "git: $(git rev-parse HEAD) dirty-files: $(git status --porcelain --untracked-files=no | wc -l)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi: no GPU?"
python -c "import torch,lightning,mlflow,hydra,pandas,numpy;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'lightning',lightning.__version__,'mlflow',mlflow.__version__,'pandas',pandas.__version__,'numpy',numpy.__version__)"
echo "setup $(( $(date +%s)-t0 )) s"
cd studies/sources/microscopy-alexnet
python -m overfitlab.prepare dataset=fashion_mnist
t1=$(date +%s)
python -m overfitlab.train --multirun hydra/launcher="${LAUNCHER:-parallel}" optimizer=adam 2>&1 | grep -v '━'
echo "train $(( $(date +%s)-t1 )) s"
python -m overfitlab.collect
python -m overfitlab.report
cp reports/metrics/runs.csv reports/metrics/epochs.csv reports/metrics/summary.json "$OUT"/
echo "total $(( $(date +%s)-t0 )) s"
