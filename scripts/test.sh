#!/usr/bin/env bash
# Run the test suite: every test, as CI (.ci/run) does. It sets up the .venv first if needed and
# installs the system packages some tests use (PostgreSQL, Chromium, SLURM: scripts/system-packages.sh), so
# no test is skipped for a missing one. Extra arguments go to pytest.
# The quick loop: `scripts/test.sh -m "not slow"` leaves out the tests marked slow (end-to-end
# pipelines and sweeps, the stages' command lines in a subprocess, the team server's runs, Chromium):
# 1.6 min wall with 247 tests on the 2-core machine with other work running (2026-12-03). Mark a
# test @pytest.mark.slow when it takes more than a few seconds, keeping a fast test of each file.
# Two or more worker processes (pytest-xdist, one per core), each test file in one worker so its
# module fixtures (the team server's PostgreSQL) start once: 12.2 min vs 20.0 min in one process on
# the 2-core development machine (293 tests, 2026-12-01). `scripts/test.sh -n 0` runs in one process.
# The 25 slowest tests are listed at the end (--durations), so CI says where its time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/system-packages.sh  # PostgreSQL, Chromium and SLURM, which some tests use
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest -n auto --dist loadfile --durations=25 "$@"
