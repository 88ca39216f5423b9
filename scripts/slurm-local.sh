#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages, in a project-local directory
# (no system service, nothing outside that directory): munged, slurmctld, slurmd and, for
# accounting (sacct), slurmdbd on a MariaDB of its own. For the tests of the SLURM launcher
# (tests/test_slurm.py) and for trying `hydra/launcher=slurm` on one machine (docs/slurm.md, "A real
# SLURM on one machine"). Run as root (slurmd starts jobs as their user); the packages: apt-get install
# slurm-wlm slurmdbd munge mariadb-server (scripts/system-packages.sh installs them).
#
#   scripts/slurm-local.sh start [--no-accounting]   # idempotent; without slurmdbd: sacct fails
#   scripts/slurm-local.sh stop | restart | status | env
#   eval "$(scripts/slurm-local.sh env)"       # export SLURM_CONF: sbatch, squeue, sacct use it
#
# Settings (environment; the first start records them in $OVERFITLAB_SLURM_DIR/cluster.env):
#   OVERFITLAB_SLURM_DIR    state: slurm.conf, logs/, state/, spool/, mysql/, munge/   [.slurm-local]
#   OVERFITLAB_SLURM_CPUS   CPUs of the node                                   [this machine's]
#   OVERFITLAB_SLURM_MEM_MB memory of the node (a job asking more is refused)  [this machine's]
# `stop` cancels every job of the cluster, then stops its daemons: nothing of it keeps running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"  # die, check_command, settings, pids, waiting
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=python3  # for free_port and keep_secret: this script runs as root, outside the project's .venv

command=${1:-start}
[[ $# -gt 0 ]] && shift
ACCOUNTING=
for arg in "$@"; do
  case $arg in
    --no-accounting) ACCOUNTING=0 ;;
    --accounting) ACCOUNTING=1 ;;
    *) die "unknown option '$arg' (scripts/slurm-local.sh --help)" ;;
  esac
done
check_command "$command"

DIR=${OVERFITLAB_SLURM_DIR:-$ROOT/.slurm-local}
if [[ $command == start || $command == restart ]]; then
  mkdir -p "$DIR" 2>/dev/null || die "cannot create OVERFITLAB_SLURM_DIR=$DIR: choose a writable directory"
elif [[ ! -d $DIR ]]; then
  echo "no cluster in $DIR (scripts/slurm-local.sh start creates it)"
  [[ $command == stop ]] && exit 0
  exit 3
fi
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/slurm.conf
SETTINGS=$DIR/cluster.env
LOGS=$DIR/logs
RUN=$DIR/run
MUNGE_SOCKET=$DIR/munge/munge.socket
MYSQL_SOCKET=$RUN/mysql.sock
export SLURM_CONF=$CONF
MARK=OVERFITLAB_SLURM_CLUSTER=$DIR  # in the daemons' environment only: `stop` finds what is left by it

ACCOUNTING=$(setting ACCOUNTING ACCOUNTING 1)
CPUS=$(setting CPUS OVERFITLAB_SLURM_CPUS "$(nproc)")
MEM_MB=$(setting MEM_MB OVERFITLAB_SLURM_MEM_MB "$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)")
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "OVERFITLAB_SLURM_CPUS=$CPUS is not a positive number"
[[ $MEM_MB =~ ^[1-9][0-9]*$ ]] || die "OVERFITLAB_SLURM_MEM_MB=$MEM_MB is not a positive number"
NODE=$(hostname -s)

require_tools() {
  [[ $(id -u) -eq 0 ]] || die "run as root: slurmd starts each job as its user (a single-node test cluster)"
  local missing=()
  for tool in munged slurmctld slurmd sbatch; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [[ $ACCOUNTING == 1 ]]; then
    for tool in slurmdbd mariadbd mariadb-install-db; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  fi
  [[ ${#missing[@]} -eq 0 ]] || die "${missing[*]} not found: apt-get install slurm-wlm slurmdbd munge mariadb-server" \
    "(or scripts/system-packages.sh)"
}

write_settings() {
  local ctld slurmd dbd db
  ctld=$(saved CTLD_PORT); ctld=${ctld:-$(free_port)}
  slurmd=$(saved SLURMD_PORT); slurmd=${slurmd:-$(free_port)}
  dbd=$(saved DBD_PORT); dbd=${dbd:-$(free_port)}
  db=$(saved DB_PORT); db=${db:-$(free_port)}
  save_settings "scripts/slurm-local.sh: the settings of the last start" ACCOUNTING="$ACCOUNTING" CPUS="$CPUS" \
    MEM_MB="$MEM_MB" CTLD_PORT="$ctld" SLURMD_PORT="$slurmd" DBD_PORT="$dbd" DB_PORT="$db"
}

write_config() {
  mkdir -p "$LOGS" "$RUN" "$DIR/state" "$DIR/spool" "$DIR/munge"
  local storage="AccountingStorageType=accounting_storage/none"
  if [[ $ACCOUNTING == 1 ]]; then
    storage="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$(saved DBD_PORT)
AccountingStoragePass=$MUNGE_SOCKET"
  fi
  cat > "$CONF" <<EOF
# scripts/slurm-local.sh: a single-node cluster (rewritten at each start)
ClusterName=overfitlab
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(saved CTLD_PORT)
SlurmdPort=$(saved SLURMD_PORT)
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$storage
# a job past its time limit: SIGTERM, then SIGKILL this many seconds later
KillWait=10
MinJobAge=300
InactiveLimit=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if [[ $ACCOUNTING == 1 ]]; then
    (umask 077; cat > "$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$(saved DBD_PORT)
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$(saved DB_PORT)
StorageUser=slurm
StoragePass=$(cat "$DIR/mysql-password")
StorageLoc=slurm_acct_db
EOF
    )
  fi
}

start_munge() {
  local key=$DIR/munge/munge.key
  chmod 755 "$DIR/munge"  # the socket: every user of the cluster; the key stays 0400, root's
  [[ -s $key ]] || mungekey --create --keyfile="$key" >/dev/null 2>&1 \
    || (umask 077; head -c 1024 /dev/urandom > "$key")
  chmod 400 "$key"
  pid_of "$DIR/munge/munged.pid" >/dev/null && return
  rm -f "$MUNGE_SOCKET"
  env "$MARK" munged --force --socket="$MUNGE_SOCKET" --key-file="$key" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$LOGS/munged.log" --seed-file="$DIR/munge/munged.seed" \
    || die "munged did not start (log: $LOGS/munged.log)"
  wait_for 20 bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'" \
    || die "munged does not answer on $MUNGE_SOCKET (log: $LOGS/munged.log)"
}

mysql_cmd() { mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root "$@"; }

start_mariadb() {
  if [[ ! -d $DIR/mysql/mysql ]]; then
    echo "creating the accounting database in $DIR/mysql"
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=socket \
      --skip-test-db > "$LOGS/mariadb-install.log" 2>&1 \
      || { tail -5 "$LOGS/mariadb-install.log" >&2; rm -rf "$DIR/mysql"; die "mariadb-install-db failed (log: $LOGS/mariadb-install.log)"; }
  fi
  keep_secret "$DIR/mysql-password" hex 16
  if ! pid_of "$RUN/mariadb.pid" >/dev/null; then
    env "$MARK" setsid mariadbd --no-defaults --datadir="$DIR/mysql" --socket="$MYSQL_SOCKET" --port="$(saved DB_PORT)" \
      --bind-address=127.0.0.1 --user=root --pid-file="$RUN/mariadb.pid" --log-error="$LOGS/mariadb.log" \
      --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
      > /dev/null 2>&1 < /dev/null &
    wait_for 60 mysql_cmd -e "SELECT 1" \
      || { tail -5 "$LOGS/mariadb.log" >&2; die "MariaDB did not start (log: $LOGS/mariadb.log)"; }
  fi
  local password
  password=$(cat "$DIR/mysql-password")
  mysql_cmd -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
    || die "could not create the accounting database's user (log: $LOGS/mariadb.log)"
}

start_slurmdbd() {
  pid_of "$RUN/slurmdbd.pid" >/dev/null && return
  env "$MARK" slurmdbd || die "slurmdbd did not start (log: $LOGS/slurmdbd.log)"  # its config: next to $SLURM_CONF
  wait_for 60 sacctmgr -n list cluster \
    || { tail -5 "$LOGS/slurmdbd.log" >&2; die "slurmdbd does not answer (log: $LOGS/slurmdbd.log)"; }
  sacctmgr -n list cluster format=cluster | grep -qw overfitlab \
    || sacctmgr -i add cluster overfitlab >/dev/null || die "sacctmgr could not add the cluster"
}

start_slurm() {
  if ! pid_of "$RUN/slurmctld.pid" >/dev/null; then
    env "$MARK" slurmctld || die "slurmctld did not start (log: $LOGS/slurmctld.log)"
  fi
  wait_for 60 scontrol ping \
    || { tail -5 "$LOGS/slurmctld.log" >&2; die "slurmctld does not answer (log: $LOGS/slurmctld.log)"; }
  if ! pid_of "$RUN/slurmd.pid" >/dev/null; then
    env "$MARK" slurmd || die "slurmd did not start (log: $LOGS/slurmd.log)"
  fi
  node_idle() { [[ $(sinfo -h -n "$NODE" -o %T 2>/dev/null) =~ ^(idle|mixed|allocated)$ ]]; }
  if ! wait_for 60 node_idle; then
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 20 node_idle \
      || { tail -5 "$LOGS/slurmd.log" >&2; die "node $NODE is $(sinfo -h -n "$NODE" -o %T) (log: $LOGS/slurmd.log)"; }
  fi
}

start() {
  require_tools
  local previous
  previous=$(saved ACCOUNTING)
  if [[ -n $previous && $previous != "$ACCOUNTING" ]] && pid_of "$RUN/slurmctld.pid" >/dev/null; then
    die "the cluster is running with ACCOUNTING=$previous: scripts/slurm-local.sh stop first"
  fi
  write_settings
  mkdir -p "$LOGS" "$RUN"
  [[ $ACCOUNTING == 1 ]] && keep_secret "$DIR/mysql-password" hex 16
  write_config
  start_munge
  if [[ $ACCOUNTING == 1 ]]; then
    start_mariadb
    start_slurmdbd
  fi
  start_slurm
  echo "SLURM $(sinfo -V | cut -d' ' -f2) running: node $NODE ($CPUS CPUs, $MEM_MB MB), accounting" \
       "$([[ $ACCOUNTING == 1 ]] && echo "on (slurmdbd)" || echo off); stop it with scripts/slurm-local.sh stop"
  echo "export SLURM_CONF=$CONF"
}

cluster_pids() {  # what is left of this cluster: its daemons and job steps (started with MARK in their
  # environment) and its jobs' processes (SLURM_CONF and a SLURM_JOB_ID); never this script's own
  local proc environ
  for proc in /proc/[0-9]*; do
    environ=$({ tr '\0' '\n' < "$proc/environ"; } 2>/dev/null) || continue
    if grep -qxF "$MARK" <<< "$environ" \
        || { grep -qxF "SLURM_CONF=$CONF" <<< "$environ" && grep -q '^SLURM_JOB_ID=' <<< "$environ"; }; then
      echo "${proc#/proc/}"
    fi
  done
}

stop_pidfile() {  # stop_pidfile NAME FILE
  local pid
  if pid=$(pid_of "$2"); then
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    echo "$1 stopped (pid $pid)"
  elif [[ -f $2 ]]; then
    echo "$1 stopped"
  fi
  rm -f "$2"
}

stop() {
  local pid
  if pid_of "$RUN/slurmctld.pid" >/dev/null; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      wait_for 30 bash -c '[[ -z $(squeue -h -o %A 2>/dev/null) ]]' || true
      echo "cancelled the cluster's jobs: $jobs"
    fi
  fi
  # all at once (each takes 2-3 s to save its state and exit)
  local name
  for name in slurmd slurmctld slurmdbd; do
    pid=$(pid_of "$RUN/$name.pid") && kill -TERM "$pid" 2>/dev/null || true
  done
  stop_pidfile slurmd "$RUN/slurmd.pid"
  stop_pidfile slurmctld "$RUN/slurmctld.pid"
  stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
  if pid_of "$RUN/mariadb.pid" >/dev/null; then
    local pid
    pid=$(pid_of "$RUN/mariadb.pid")
    mysql_cmd -e "SHUTDOWN" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
    echo "MariaDB stopped (pid $pid)"
  fi
  rm -f "$RUN/mariadb.pid"
  stop_pidfile munged "$DIR/munge/munged.pid"
  # Whatever is left (a job step slurmd no longer tracks): each process of this cluster, by pid.
  local left
  left=$(cluster_pids | tr '\n' ' ')
  if [[ -n ${left// /} ]]; then
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    echo "killed leftover processes of the cluster: $left"
  fi
}

status() {
  local rc=0 name file
  for name in munged slurmdbd mariadb slurmctld slurmd; do
    case $name in
      munged) file=$DIR/munge/munged.pid ;;
      *) file=$RUN/$name.pid ;;
    esac
    if [[ $name =~ ^(slurmdbd|mariadb)$ && $(saved ACCOUNTING) != 1 ]]; then continue; fi
    if pid=$(pid_of "$file"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=3; fi
  done
  if [[ $rc == 0 ]]; then
    sinfo -h -o "node %N: %T, %c CPUs, %m MB" || rc=3
    echo "export SLURM_CONF=$CONF"
  fi
  return $rc
}

case $command in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) pid_of "$RUN/slurmctld.pid" >/dev/null || die "the cluster is not running: scripts/slurm-local.sh start"
       echo "export SLURM_CONF=$CONF" ;;
esac
