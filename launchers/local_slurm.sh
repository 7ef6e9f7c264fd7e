#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for tests and CI (Debian/Ubuntu, as root, no systemd needed).
#   launchers/local_slurm.sh start    # install slurm-wlm + munge if missing, configure, start daemons
#   launchers/local_slurm.sh stop     # stop the daemons this script started
#   launchers/local_slurm.sh status   # sinfo
# XLEXP_SLURM_ACCOUNTING=1 (default) also installs and starts mariadb + slurmdbd: without accounting,
# submitit cannot tell that a job died without writing output and waits for it forever.
# Each job gets DefMemPerCPU of memory unless it asks (without it a job takes the whole node and
# array tasks run one at a time).
set -euo pipefail
ACTION=${1:-start}
ACCOUNTING=${XLEXP_SLURM_ACCOUNTING:-1}
CLUSTER=xlexp
CONF=/etc/slurm
LOGS=/var/log/slurm
RUN=/run/xlexp-slurm   # pid files of the daemons started here
T0=$(date +%s%N)
say() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf 'local_slurm: %s (%d.%01d s)\n' "$*" $((ms / 1000)) $((ms % 1000 / 100)) >&2; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) > until )); then echo "local_slurm: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}
start_daemon() {  # start_daemon NAME COMMAND...: foreground daemon under setsid, logs in $LOGS
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.out" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

stop() {
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    if [[ -f $RUN/$name.pid ]]; then
      kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      rm -f "$RUN/$name.pid"
    fi
  done
  say "stopped"
}

install() {
  local pkgs=()
  command -v slurmctld >/dev/null || pkgs+=(slurm-wlm)
  command -v munged >/dev/null || pkgs+=(munge)
  if [[ $ACCOUNTING == 1 ]]; then
    command -v slurmdbd >/dev/null || pkgs+=(slurmdbd)
    command -v mariadbd >/dev/null || pkgs+=(mariadb-server)
  fi
  if (( ${#pkgs[@]} )); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    say "installed ${pkgs[*]}"
  fi
}

start_munge() {
  # munged must run as the munge user; /run/munge is not created without systemd.
  mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
  [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown -R munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    start_daemon munged runuser -u munge -- munged --foreground --force
    wait_for 20 munged sh -c 'munge -n | unmunge'
  fi
  say "munge up"
}

start_accounting() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  if ! mariadb-admin ping >/dev/null 2>&1; then
    start_daemon mariadb runuser -u mysql -- mariadbd --skip-networking=0 --bind-address=127.0.0.1
    wait_for 60 mariadb mariadb-admin ping
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'xlexp-local';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat > $CONF/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=xlexp-local
StorageLoc=slurm_acct_db
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
CONF
  chmod 600 $CONF/slurmdbd.conf
  if ! sacctmgr -n show cluster >/dev/null 2>&1; then
    start_daemon slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n show cluster
  fi
  sacctmgr -i -Q add cluster $CLUSTER >/dev/null 2>&1 || true
  say "mariadb + slurmdbd up"
}

write_slurm_conf() {
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -n 1)   # NodeName=<host> CPUs=... RealMemory=...
  mkdir -p $CONF /var/spool/slurmctld /var/spool/slurmd
  cat > $CONF/slurm.conf.new <<CONF
# written by launchers/local_slurm.sh: one node, localhost, for tests
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120)
AuthInfo=cred_expire=${XLEXP_SLURM_CRED_EXPIRE:-30}
# seconds between SIGTERM and SIGKILL when a job is cancelled or requeued (default 30); submitit
# ignores SIGTERM, so a short grace keeps a requeued tiny job from simply finishing first
KillWait=5
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups in a container: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${XLEXP_SLURM_DEF_MEM_PER_CPU:-1024}
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=300
MinJobAge=600
$( [[ $ACCOUNTING == 1 ]] && echo "AccountingStorageType=accounting_storage/slurmdbd" )
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  if cmp -s $CONF/slurm.conf.new $CONF/slurm.conf; then rm $CONF/slurm.conf.new; return; fi
  mv $CONF/slurm.conf.new $CONF/slurm.conf
  # Running daemons read some settings (cred_expire) only at start: restart the ones started here.
  for name in slurmd slurmctld; do
    if [[ -f $RUN/$name.pid ]] && kill "$(cat $RUN/$name.pid)" 2>/dev/null; then
      while kill -0 "$(cat $RUN/$name.pid)" 2>/dev/null; do sleep 0.2; done
      say "stopped $name to apply the new slurm.conf"
    fi
  done
}

start() {
  install
  mkdir -p $LOGS $RUN
  start_munge
  write_slurm_conf   # before slurmdbd: sacctmgr reads slurm.conf
  if [[ $ACCOUNTING == 1 ]]; then start_accounting; fi
  if ! scontrol ping 2>/dev/null | grep -q UP; then
    start_daemon slurmctld slurmctld -D
    wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
  fi
  if ! sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    start_daemon slurmd slurmd -D
    wait_for 30 "an idle node" sh -c "sinfo -h -o %T | grep -qE 'idle|mix|alloc'"
  fi
  say "slurm up: $(sinfo -h -o '%P %D %T %c cpus %m MB')"
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
