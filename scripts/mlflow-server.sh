#!/usr/bin/env bash
# A team's MLflow tracking server: PostgreSQL (a cluster in a project-local directory, no system
# service) holds the runs, a directory (or S3) the artifacts; `mlflow server` serves both.
#
#   scripts/mlflow-server.sh start [-- EXTRA MLFLOW SERVER OPTIONS]   # idempotent
#   scripts/mlflow-server.sh stop | restart | status | env
#   eval "$(scripts/mlflow-server.sh env)"    # export MLFLOW_TRACKING_URI (and credentials)
#
# Settings (environment; the first start records them in $OVERFITLAB_SERVER_DIR/server.env and
# later commands reuse them unless set again):
#   OVERFITLAB_SERVER_DIR   state: postgres/ (the database), artifacts/, logs/   [.mlflow-server]
#   MLFLOW_HOST, MLFLOW_PORT   where the server listens                  [127.0.0.1, 5000]
#   OVERFITLAB_PG_PORT      PostgreSQL's port, on 127.0.0.1 only           [a free one, kept]
#   OVERFITLAB_ARTIFACTS    --artifacts-destination: a directory or s3://bucket/prefix
#                                                                    [$OVERFITLAB_SERVER_DIR/artifacts]
#   OVERFITLAB_MLFLOW_AUTH  1: basic authentication (--app-name basic-auth)                  [0]
#   OVERFITLAB_MLFLOW_DEFAULT_PERMISSION  with it, what every user may do with others' experiments:
#                           READ, EDIT, MANAGE or NO_PERMISSIONS                          [READ]
#   OVERFITLAB_MLFLOW_WORKERS  server worker processes                                       [4]
#   OVERFITLAB_PYTHON       the Python with mlflow and psycopg2                     [.venv/bin/python]
#   PG_BIN                  PostgreSQL's bin directory             [newest /usr/lib/postgresql/*/bin]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"  # die, check_command, settings, pids, waiting
cd "$(dirname "$0")/.."
ROOT=$PWD

command=${1:-start}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == "--" ]] && shift
check_command "$command"

DIR=${OVERFITLAB_SERVER_DIR:-$ROOT/.mlflow-server}
mkdir -p "$DIR" 2>/dev/null || die "cannot create OVERFITLAB_SERVER_DIR=$DIR: choose a writable directory"
DIR=$(cd "$DIR" && pwd)
PGDATA_DIR=$DIR/postgres
LOGS=$DIR/logs
SETTINGS=$DIR/server.env
PIDFILE=$DIR/mlflow.pid

HOST=$(setting HOST MLFLOW_HOST 127.0.0.1)
PORT=$(setting PORT MLFLOW_PORT 5000)
PG_PORT=$(setting PG_PORT OVERFITLAB_PG_PORT "")
ARTIFACTS=$(setting ARTIFACTS OVERFITLAB_ARTIFACTS "$DIR/artifacts")
AUTH=$(setting AUTH OVERFITLAB_MLFLOW_AUTH 0)
WORKERS=$(setting WORKERS OVERFITLAB_MLFLOW_WORKERS 4)
PERMISSION=$(setting PERMISSION OVERFITLAB_MLFLOW_DEFAULT_PERMISSION READ)
[[ $PORT =~ ^[0-9]+$ ]] || die "MLFLOW_PORT=$PORT is not a port number"
[[ -z $PG_PORT || $PG_PORT =~ ^[0-9]+$ ]] || die "OVERFITLAB_PG_PORT=$PG_PORT is not a port number"
[[ $AUTH == 0 || $AUTH == 1 ]] || die "OVERFITLAB_MLFLOW_AUTH=$AUTH must be 0 or 1"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "OVERFITLAB_MLFLOW_WORKERS=$WORKERS must be a positive number"
[[ $PERMISSION =~ ^(READ|EDIT|MANAGE|NO_PERMISSIONS)$ ]] \
  || die "OVERFITLAB_MLFLOW_DEFAULT_PERMISSION=$PERMISSION must be READ, EDIT, MANAGE or NO_PERMISSIONS"
case $HOST in 0.0.0.0 | 127.* | localhost | ::) PROBE_HOST=127.0.0.1 ;; *) PROBE_HOST=$HOST ;; esac
URL="http://$([[ $HOST == 0.0.0.0 ]] && hostname -f 2>/dev/null || echo "$HOST"):$PORT"
LOCAL_URL="http://$PROBE_HOST:$PORT"

PY=${OVERFITLAB_PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PY ]] || PY=$(command -v python3 || true)
# MLflow 3 reports usage to its developers by default; a lab's server should not.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
# Its job runner (GenAI scorers, trace roll-ups: 7 more processes) is of no use to training studies.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
export PGPASSFILE=$DIR/pgpass PGCONNECT_TIMEOUT=5

# PostgreSQL refuses to run as root: then its programs run as the `postgres` user.
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

find_pg_bin() {
  if [[ -n ${PG_BIN:-} ]]; then
    [[ -x $PG_BIN/pg_ctl ]] || die "PG_BIN=$PG_BIN has no pg_ctl: point it at PostgreSQL's bin directory"
    return
  fi
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [[ -z $PG_BIN ]] && command -v pg_ctl >/dev/null; then PG_BIN=$(dirname "$(command -v pg_ctl)"); fi
  [[ -n $PG_BIN && -x $PG_BIN/pg_ctl ]] \
    || die "PostgreSQL not found: install it (apt-get install postgresql) or set PG_BIN to its bin directory"
}

# Something listens on host:port (bash's /dev/tcp; no extra tools).
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

mlflow_pid() { pid_of "$PIDFILE"; }  # the server's pid when it is alive

pg_running() { [[ -f $PGDATA_DIR/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1; }

healthy() { "$PY" - "$LOCAL_URL/health" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

backend_uri() { echo "postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT/$1"; }

sql() {  # psql as the cluster's owner `mlflow` (password from $PGPASSFILE)
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U mlflow -d postgres -tAc "$1"
}

init_cluster() {
  [[ -f $PGDATA_DIR/PG_VERSION ]] && return
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 \
      || die "running as root, PostgreSQL needs a 'postgres' user (apt-get install postgresql creates it)"
    chmod o+x "$DIR"  # postgres must reach its data directory inside $DIR
    runuser -u postgres -- test -x "$DIR" \
      || die "user postgres cannot reach $DIR (a parent directory is private): set OVERFITLAB_SERVER_DIR" \
             "to a directory it can reach, or run as a non-root user"
  fi
  echo "creating the PostgreSQL cluster in $PGDATA_DIR"
  local password
  password=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
  (umask 077; echo "*:*:*:mlflow:$password" > "$PGPASSFILE")
  mkdir -p "$PGDATA_DIR" "$LOGS"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$PGDATA_DIR"
  chmod 700 "$PGDATA_DIR"
  # Password (scram) authentication only, even for local users: others on a shared machine can
  # reach 127.0.0.1 too.
  local pwfile=$DIR/.initdb-password ok=1
  (umask 077; echo "$password" > "$pwfile")
  [[ $(id -u) -eq 0 ]] && chown postgres: "$pwfile"
  as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U mlflow --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 > "$LOGS/initdb.log" 2>&1 || ok=0
  rm -f "$pwfile"
  if [[ $ok == 0 ]]; then
    tail -5 "$LOGS/initdb.log" >&2
    rm -rf "$PGDATA_DIR"
    die "initdb failed (full log: $LOGS/initdb.log)"
  fi
}

start_pg() {
  if pg_running; then
    [[ -n $PG_PORT ]] || die "PostgreSQL is running in $PGDATA_DIR but its port is unknown: set OVERFITLAB_PG_PORT"
    return
  fi
  if [[ -z $PG_PORT ]]; then PG_PORT=$(free_port); fi
  listening 127.0.0.1 "$PG_PORT" \
    && die "port $PG_PORT (PostgreSQL) is in use by another program: set OVERFITLAB_PG_PORT to a free port"
  mkdir -p "$LOGS"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$LOGS"
  # TCP on 127.0.0.1 only and no Unix socket (its default directory needs the system service).
  if ! as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$LOGS/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" >/dev/null; then
    tail -5 "$LOGS/postgres.log" >&2
    die "PostgreSQL did not start (full log: $LOGS/postgres.log)"
  fi
}

ensure_database() {
  local name=$1
  [[ $(sql "SELECT 1 FROM pg_database WHERE datname = '$name'") == 1 ]] && return
  sql "CREATE DATABASE $name" || die "could not create the database $name (log: $LOGS/postgres.log)"
}

auth_config() {  # basic-auth: users in their own database; a generated admin password, kept
  ensure_database mlflow_auth
  local password_file=$DIR/admin-password
  keep_secret "$password_file" urlsafe 18
  (umask 077; cat > "$DIR/basic_auth.ini" <<EOF
[mlflow]
default_permission = $PERMISSION
database_uri = $(backend_uri mlflow_auth)
admin_username = admin
admin_password = $(cat "$password_file")
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
  )
  export MLFLOW_AUTH_CONFIG_PATH=$DIR/basic_auth.ini
  # Its CSRF protection signs with a key that must stay the same across workers and restarts.
  keep_secret "$DIR/flask-secret" hex 32
  MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$DIR/flask-secret")
  export MLFLOW_FLASK_SERVER_SECRET_KEY
}

start() {
  [[ -n $PY ]] || die "no Python found: run scripts/setup.sh (creates .venv) or set OVERFITLAB_PYTHON"
  "$PY" -c 'import mlflow, psycopg2' 2>/dev/null \
    || die "$PY lacks mlflow or psycopg2: run scripts/setup.sh (or pip install mlflow psycopg2-binary)"
  if [[ $AUTH == 1 ]]; then
    "$PY" -c 'import flask_wtf' 2>/dev/null \
      || die "basic authentication needs Flask-WTF: run scripts/setup.sh (or pip install 'mlflow[auth]')"
  fi
  find_pg_bin
  local pid
  if pid=$(mlflow_pid); then
    if healthy; then
      echo "MLflow server already running (pid $pid) at $URL"
      print_links
      print_env
      return
    fi
    die "an MLflow server (pid $pid) is running but $LOCAL_URL/health does not answer:" \
        "scripts/mlflow-server.sh stop, then start (log: $LOGS/mlflow.log)"
  fi
  listening "$PROBE_HOST" "$PORT" \
    && die "port $PORT on $PROBE_HOST is in use by another program: set MLFLOW_PORT to a free port"
  if [[ $ARTIFACTS != *://* ]]; then
    mkdir -p "$ARTIFACTS" 2>/dev/null || die "cannot create the artifacts directory $ARTIFACTS"
    ARTIFACTS=$(cd "$ARTIFACTS" && pwd)
  fi

  init_cluster
  start_pg
  save_settings "scripts/mlflow-server.sh: the settings of the last start (the environment overrides them)" \
    HOST="$HOST" PORT="$PORT" PG_PORT="$PG_PORT" ARTIFACTS="$ARTIFACTS" AUTH="$AUTH" WORKERS="$WORKERS" \
    PERMISSION="$PERMISSION"
  ensure_database mlflow
  local args=(--backend-store-uri "$(backend_uri mlflow)" --artifacts-destination "$ARTIFACTS"
              --host "$HOST" --port "$PORT" --workers "$WORKERS")
  if [[ $AUTH == 1 ]]; then
    auth_config
    args+=(--app-name basic-auth)
  else
    unset MLFLOW_AUTH_CONFIG_PATH
  fi
  if [[ $HOST != "$PROBE_HOST" && $HOST != 127.* && $AUTH == 0 ]]; then
    echo "warning: listening on $HOST without authentication: anyone who reaches port $PORT can change" \
         "every run (OVERFITLAB_MLFLOW_AUTH=1)" >&2
  fi

  echo "starting MLflow at $URL (runs: PostgreSQL on 127.0.0.1:$PG_PORT, artifacts: $ARTIFACTS)"
  # Its own session and process group, so that `stop` ends the server with all its workers.
  setsid "$PY" -m mlflow server "${args[@]}" "$@" > "$LOGS/mlflow.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  answered_or_exited() { healthy || ! mlflow_pid >/dev/null; }
  WAIT_STEP=0.5 wait_for 90 answered_or_exited \
    || { stop_mlflow; die "the MLflow server did not answer within 90 s (log: $LOGS/mlflow.log)"; }
  if ! mlflow_pid >/dev/null; then
    tail -15 "$LOGS/mlflow.log" >&2
    rm -f "$PIDFILE"
    die "the MLflow server exited (full log: $LOGS/mlflow.log)"
  fi
  echo "MLflow server running (pid $(cat "$PIDFILE")) at $URL; stop it with scripts/mlflow-server.sh stop"
  print_links
  print_env
}

print_env() {
  echo "export MLFLOW_TRACKING_URI=$URL"
  if [[ $AUTH == 1 ]]; then
    echo "export MLFLOW_TRACKING_USERNAME=admin"
    echo "export MLFLOW_TRACKING_PASSWORD=$(cat "$DIR/admin-password")"
  fi
}

print_links() {  # each study's runs page (MLflow 3's UI opens experiments in its GenAI view otherwise)
  echo "the runs of each study (model-training view):"
  local user="" password=""
  if [[ $AUTH == 1 ]]; then user=admin; password=$(cat "$DIR/admin-password"); fi
  MLFLOW_TRACKING_USERNAME=$user MLFLOW_TRACKING_PASSWORD=$password \
    PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m overfitlab.tracking.ui_view "$LOCAL_URL" "$URL" || true
}

stop_mlflow() {
  local pid
  if pid=$(mlflow_pid); then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    wait_gone "$pid" 15 || true
    kill -KILL -- "-$pid" 2>/dev/null || true  # the group: workers may outlive their leader
    echo "MLflow server stopped (pid $pid)"
  else
    echo "MLflow server not running"
  fi
  rm -f "$PIDFILE"
}

stop() {
  stop_mlflow
  if [[ -f $PGDATA_DIR/PG_VERSION ]]; then
    find_pg_bin
    if pg_running; then
      as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w >/dev/null && echo "PostgreSQL stopped"
    else
      echo "PostgreSQL not running"
    fi
  fi
}

status() {
  local pid rc=0
  if pid=$(mlflow_pid) && healthy; then
    echo "MLflow server: running (pid $pid) at $URL, artifacts in $ARTIFACTS"
  else
    echo "MLflow server: stopped"; rc=3
  fi
  if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
    echo "PostgreSQL: no cluster yet in $PGDATA_DIR (scripts/mlflow-server.sh start creates it)"; rc=3
  else
    find_pg_bin
    if pg_running; then
      echo "PostgreSQL: running on 127.0.0.1:$PG_PORT, data in $PGDATA_DIR ($(du -sh "$PGDATA_DIR" 2>/dev/null | cut -f1))"
    else
      echo "PostgreSQL: stopped, data kept in $PGDATA_DIR"; rc=3
    fi
  fi
  return $rc
}

case $command in
  start) start "$@" ;;
  stop) stop ;;
  restart) stop; start "$@" ;;
  status) status ;;
  env) mlflow_pid >/dev/null || die "the MLflow server is not running: scripts/mlflow-server.sh start"; print_env ;;
esac
