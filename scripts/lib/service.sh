# What the scripts that run a local service share (scripts/slurm-local.sh, scripts/mlflow-server.sh):
# the start | stop | restart | status | env command, one-line errors, settings recorded at a start,
# pid files, free ports, waiting for a service and for a process to end. Sourced, never run:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"
# A sourcing script sets SETTINGS (its settings file) before calling `saved` or `setting`, and may
# set PY (the Python for `free_port` and `keep_secret`; python3 otherwise).

die() { echo "error: $*" >&2; exit 1; }

usage() {  # the sourcing script's header comment, from its second line down to `set -euo`
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

check_command() {  # check_command COMMAND: one of the service's commands; help prints the usage
  case $1 in
    start | stop | restart | status | env) ;;
    -h | --help | help) usage; exit 0 ;;
    *) die "unknown command '$1': use start, stop, restart, status or env (scripts/$(basename "$0") --help)" ;;
  esac
}

# Settings: the environment first, then what the last start recorded in $SETTINGS, then a default.
saved() { [[ -f $SETTINGS ]] && sed -n "s/^$1=//p" "$SETTINGS" | tail -1; true; }

setting() {  # setting NAME VARIABLE DEFAULT: $VARIABLE if set, else the saved NAME, else DEFAULT
  local value=${!2:-}
  value=${value:-$(saved "$1")}
  printf '%s\n' "${value:-$3}"
}

save_settings() {  # save_settings COMMENT NAME=VALUE...: $SETTINGS rewritten, headed by the comment
  local comment=$1
  shift
  { echo "# $comment"; printf '%s\n' "$@"; } > "$SETTINGS"
}

keep_secret() {  # keep_secret FILE hex|urlsafe BYTES: a random secret in FILE (0600), kept once there
  [[ -s $1 ]] || (umask 077; "${PY:-python3}" -c "import secrets; print(secrets.token_$2($3))" > "$1")
}

free_port() { "${PY:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pid_of() {  # the pid in a pid file when that process is alive
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds, every ${WAIT_STEP:-0.2} s; 1 when time is up
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep "${WAIT_STEP:-0.2}"
  done
}

wait_gone() {  # wait_gone PID SECONDS: until the process has exited; 1 when it is still alive then
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
