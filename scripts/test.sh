#!/usr/bin/env bash
# Run the test suite (sets up the .venv first if needed). Extra arguments go to pytest.
# Two or more worker processes (pytest-xdist, one per core), each test file in one worker so its
# module fixtures (the team server's PostgreSQL) start once: 12.2 min vs 20.0 min in one process on
# the 2-core development machine (293 tests, 2026-12-01). `scripts/test.sh -n 0` runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/system-packages.sh  # PostgreSQL and Chromium, which some tests use
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -n auto --dist loadfile "$@"
