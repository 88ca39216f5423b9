#!/usr/bin/env bash
# Install, when missing, the Debian packages the tests use, from Debian's archive with apt-get (as
# root or through sudo), idempotently and quietly; no system service is started:
#   postgresql  the team's tracking server (pg_ctl, initdb; tests/test_team_server.py)
#   chromium    the MLflow UI in a real browser (tests/test_mlflow_ui.py)
#   slurm-wlm slurmdbd munge mariadb-server   a single-node SLURM cluster with accounting
#               (scripts/slurm-local.sh; tests/test_slurm.py)
# The one place for them: scripts/test.sh (and so .ci/run) calls it. Where a package cannot be
# installed it exits 1 with one line naming it and what to do; the tests would fail without it.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
  || need+=(chromium)
command -v slurmctld >/dev/null && command -v slurmd >/dev/null || need+=(slurm-wlm)
command -v slurmdbd >/dev/null || need+=(slurmdbd)
command -v munged >/dev/null || need+=(munge)
command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || need+=(mariadb-server)
[[ ${#need[@]} -eq 0 ]] && exit 0

fail() {
  echo "error: $1; install ${need[*]} (Debian: apt-get install ${need[*]}), then run the tests again" >&2
  exit 1
}
command -v apt-get >/dev/null || fail "${need[*]} missing and there is no apt-get here"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || fail "${need[*]} missing, not root and no sudo to install it"
  SUDO=(sudo)
fi
echo "installing ${need[*]} (apt-get)"
# A failed update (offline, with a local mirror or cache) is not fatal by itself: the install decides.
"${SUDO[@]}" apt-get update -qq || true
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" \
  >/dev/null || fail "apt-get could not install ${need[*]} (its error is above)"
