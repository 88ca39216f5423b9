#!/usr/bin/env bash
# Set up everything the project needs, idempotently: the .venv with the pinned dependencies and,
# where apt exists, the offline Fashion-MNIST copy (Debian package dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# torch/torchvision are pinned in pyproject.toml; they come from the local wheel cache here.
# uv installs the ~6 GB of wheels (torch's CUDA build among them) in parallel: 1.3 min vs 4.1 min
# with pip on this 2-core machine from empty caches (benchmarks/results_setup.txt); pip is the
# fallback where uv cannot be installed or fails. uv reads no pip configuration, so pip's local wheel
# sources (find-links, extra indexes, constraints) are handed on to it.
pip_config() { .venv/bin/python -m pip config get "global.$1" 2>/dev/null || true; }
install_with_uv() {
    [ -x .venv/bin/uv ] \
        || .venv/bin/python -m pip install --quiet --disable-pip-version-check uv 2>/dev/null || return 1
    local args=()
    for link in $(pip_config find-links); do args+=(--find-links "$link"); done
    for index in $(pip_config extra-index-url); do args+=(--extra-index-url "$index"); done
    local constraint; constraint=$(pip_config constraint)
    [ -n "$constraint" ] && args+=(--constraint "$constraint")
    # unsafe-best-match: every index counts, as with pip (uv would otherwise take a package from
    # the first index that has it)
    # --compile-bytecode: as pip does; with PYTHONDONTWRITEBYTECODE set (as on this machine) every
    # process would otherwise compile torch, mlflow, ... from source on each import (20.4 s vs
    # 7.9 s; benchmarks/results_setup.txt). It also recompiles on a no-op run: ~19 s.
    .venv/bin/uv pip install --quiet --python .venv/bin/python --index-strategy unsafe-best-match \
        --compile-bytecode "${args[@]}" -e '.[test]'
}
install_with_uv || {
    echo "uv unavailable or failed; installing with pip (slower)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" || true
}
.venv/bin/python -c "import overfitlab, torch, lightning, hydra, mlflow, dvc" \
    || { echo "error: the .venv install failed; see the uv or pip output above" >&2; exit 1; }

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${OVERFITLAB_DATA_DIR:-}" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo
    if command -v apt-get >/dev/null; then
        echo "installing the offline Fashion-MNIST copy (apt-get install dataset-fashion-mnist)"
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            || echo "warning: could not install dataset-fashion-mnist; put the four IDX files in \$OVERFITLAB_DATA_DIR" >&2
    else
        echo "warning: no apt-get here; put the four Fashion-MNIST IDX files in \$OVERFITLAB_DATA_DIR" >&2
    fi
fi
