#!/usr/bin/env bash
# Device run: the microscopy study's AlexNet clone on full Fashion-MNIST, 3 seeds, the study's own
# stage commands (dvc.yaml) without DVC. Environment: the device image's torch + carried wheels.
set -euo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
tar -xJf .gpu/site.tar.xz -C /tmp
export PYTHONPATH=/tmp/site:$PWD/src
[ -d .git ] || cp -r .gpu/git .git
git checkout -q -- studies   # other studies' results written here while this was sent (not inputs)
echo "git: $(git rev-parse HEAD) dirty-files: $(git status --porcelain --untracked-files=no | wc -l)"
export OVERFITLAB_DATA_DIR=$PWD/.gpu/fashion-mnist
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch,lightning,mlflow,hydra,pandas,numpy;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'lightning',lightning.__version__,'mlflow',mlflow.__version__,'pandas',pandas.__version__,'numpy',numpy.__version__)"
echo "setup $(( $(date +%s)-t0 )) s"
cd studies/sources/microscopy-alexnet
python3 -m overfitlab.prepare dataset=fashion_mnist
t1=$(date +%s)
python3 -m overfitlab.train --multirun hydra/launcher=${LAUNCHER:-parallel} optimizer=adam 2>&1 | grep -v '━'
echo "train $(( $(date +%s)-t1 )) s"
python3 -m overfitlab.collect
python3 -m overfitlab.report
tar -czf $OUT/study.tgz reports runs
cp reports/metrics/summary.json $OUT/
echo "total $(( $(date +%s)-t0 )) s"
