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
# torch/torchvision are pinned in pyproject.toml; pip takes them from the local wheel cache here.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import overfitlab, torch, lightning, hydra, mlflow, dvc" \
    || { echo "error: the .venv install failed; see the pip output above" >&2; exit 1; }

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
