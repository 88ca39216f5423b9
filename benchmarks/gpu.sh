#!/usr/bin/env bash
# The GPU checks and measurements in one go, on a machine with a CUDA GPU (benchmarks/README.md):
#   bash benchmarks/gpu.sh [OUT_DIR]     # default benchmarks/; ~10 min on an H100/H200
# 1. correctness on the GPU: N seeds trained at once as one vectorized model vs each seed alone
# 2. throughput of the project's path vs a plain loop on the GPU, one seed
# 3. seeds per hour: N seeds at once (vectorized) vs one after another with the plain loop
# 4. (2) again with the plain loop under the project's numerics (deterministic kernels, no TF32)
set -uo pipefail
out=${1:-benchmarks}
python=${PYTHON:-python3}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, torch.cuda.get_device_name())"
status=0
"$python" -m pytest -q -p no:cacheprovider tests/test_vectorized_seeds.py::test_vectorized_seeds_train_each_seed_as_if_alone \
    2>&1 | tail -25 || status=1
export PYTHONUNBUFFERED=1
"$python" benchmarks/throughput.py --accelerator gpu --part seeds --seeds 8 32 --seed-models deep_network mlp_300_100 \
    --repeats 2 --epochs 4 --out "$out/results_gpu_seeds.json" || status=1
"$python" benchmarks/throughput.py --accelerator gpu --part throughput --repeats 2 --epochs 4 \
    --out "$out/results_gpu.json" || status=1
"$python" benchmarks/throughput.py --accelerator gpu --part throughput --repeats 1 --epochs 4 --plain-numerics project \
    --out "$out/results_gpu_plain_project_numerics.json" || status=1
exit $status
