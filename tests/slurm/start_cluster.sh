#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (for the test-suite and for trying the
# configs/profiles/slurm profile), without systemd: munged, mariadbd, slurmdbd, slurmctld and slurmd are
# started directly as background daemons.
#
#   bash tests/slurm/start_cluster.sh      # installs what is missing (apt), starts what is not running
#   bash tests/slurm/stop_cluster.sh       # stops what this script started
#
# Idempotent: a second run while everything is up only checks it (about a second) and exits 0, whichever clone
# it runs from. Runs at the same time (two test suites) take turns on a machine-wide lock (tests/slurm/lock.sh).
# Must run as root (slurmd, /etc/slurm, apt-get).
#
# The cluster: one node "localhost" (127.0.0.1) with the CPUs `slurmd -C` reports, two partitions on it,
# `cpu` (Default=YES) and `gpu`, $EVSEG_SLURM_GPUS stand-in GPUs (gres without CUDA), CPU binding by
# task/affinity (a job with --cpus-per-task=N sees N CPUs in os.sched_getaffinity), select/cons_tres + CR_Core
# so 1-CPU jobs run side by side, and real accounting (slurmdbd + a private MariaDB) so that sacct/sacctmgr
# work: cluster $EVSEG_SLURM_CLUSTER, account $EVSEG_SLURM_ACCOUNT with user root in it.
#
# Environment:
#   EVSEG_SLURM_DIR         all state: spool dirs, logs, pid files, the MariaDB data   [/tmp/evseg-slurm]
#   EVSEG_SLURM_ACCOUNTING  1: slurmdbd + MariaDB (sacct works); 0: accounting_storage/none (then use
#                           snakemake's --slurm-status-command squeue and no slurm_account) [1]
#   EVSEG_SLURM_CLUSTER     cluster name                                               [evseg]
#   EVSEG_SLURM_ACCOUNT     account created for root                                   [myaccount]
#   EVSEG_SLURM_DB_PORT     TCP port of the private MariaDB (127.0.0.1 only)           [13306]
#   EVSEG_SLURM_TIMEOUT     seconds to wait for each daemon                            [60]
#   EVSEG_SLURM_GPUS        stand-in GPUs of the node (gres gpu; character devices like /dev/null, so
#                           SLURM hands out and accounts for them, sets CUDA_VISIBLE_DEVICES; no CUDA) [2]
#   EVSEG_SLURM_LOCK        the machine-wide lock that lets one start/stop script run at a time (tests/slurm/lock.sh)
#                                                                                      [/run/lock/evseg-slurm.lock]
#   EVSEG_SLURM_LOCK_WAIT   seconds to wait for another start/stop to finish           [900]
#
# /etc/slurm/slurm.conf, gres.conf and slurmdbd.conf are (over)written: Debian's binaries read them, and the
# snakemake SLURM plugin calls sbatch/squeue/sacct without our environment, so SLURM_CONF is no option.
set -Eeuo pipefail

DIR=${EVSEG_SLURM_DIR:-/tmp/evseg-slurm}
ACCOUNTING=${EVSEG_SLURM_ACCOUNTING:-1}
CLUSTER=${EVSEG_SLURM_CLUSTER:-evseg}
ACCOUNT=${EVSEG_SLURM_ACCOUNT:-myaccount}
DB_PORT=${EVSEG_SLURM_DB_PORT:-13306}
TIMEOUT=${EVSEG_SLURM_TIMEOUT:-60}
GPUS=${EVSEG_SLURM_GPUS:-2}
ETC=/etc/slurm
SLURM_CONF_FILE=$ETC/slurm.conf
GRES_CONF_FILE=$ETC/gres.conf
DBD_CONF_FILE=$ETC/slurmdbd.conf
MUNGE_KEY=/etc/munge/munge.key
# The default socket: AuthInfo=socket=... in slurm.conf is not honoured by the accounting (slurmdbd)
# connections of sacctmgr/sacct in 22.05, so munged must listen where everything looks by default.
MUNGE_SOCKET=/run/munge/munge.socket.2
DB_SOCKET=$DIR/run/mysqld/mysqld.sock
DB_PASS=evseg-slurm-local   # a local test database on 127.0.0.1 only
CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819
T0=${EPOCHREALTIME/./}

elapsed() { local d=$((${EPOCHREALTIME/./} - T0)); printf '%d.%01d' $((d / 1000000)) $((d % 1000000 / 100000)); }
log() { printf '[start_cluster %ss] %s\n' "$(elapsed)" "$*"; }
die() { printf '[start_cluster] ERROR: %s\n' "$*" >&2; exit 1; }
# die with the last lines of a daemon's log
die_log() { # MESSAGE LOGFILE...
    local msg=$1 f
    shift
    {
        printf '[start_cluster] ERROR: %s\n' "$msg"
        for f in "$@"; do
            printf '[start_cluster] log: %s\n' "$f"
            if [[ -f $f ]]; then tail -n 25 "$f" | sed 's/^/    | /'; fi
        done
    } >&2
    exit 1
}

# set -e ends the script at the first failing command: say which, so that no exit is silent
trap 'printf "[start_cluster] ERROR: line %s: \"%s\" failed (exit %s)\n" "$LINENO" "$BASH_COMMAND" "$?" >&2' ERR

[[ $(id -u) -eq 0 ]] || die "must run as root (starts slurmd, writes /etc/slurm, may apt-get install)"
[[ $ACCOUNTING == 0 || $ACCOUNTING == 1 ]] || die "EVSEG_SLURM_ACCOUNTING must be 0 or 1, not '$ACCOUNTING'"
[[ $GPUS =~ ^[1-9][0-9]?$ ]] || die "EVSEG_SLURM_GPUS must be a number of stand-in GPUs from 1 to 99, not '$GPUS'"

# one start or stop at a time on this machine (a second test suite waits here, then finds the cluster up)
# shellcheck source=tests/slurm/lock.sh
source "$(dirname "${BASH_SOURCE[0]}")/lock.sh"
run_locked "$@"

# ---------------------------------------------------------------------------------------------------- install
install_missing() {
    local pkgs=()
    command -v munged >/dev/null || pkgs+=(munge)
    command -v slurmctld >/dev/null || pkgs+=(slurmctld)
    command -v slurmd >/dev/null || pkgs+=(slurmd)
    command -v sbatch >/dev/null || pkgs+=(slurm-client)
    if [[ $ACCOUNTING == 1 ]]; then
        command -v slurmdbd >/dev/null || pkgs+=(slurmdbd)
        command -v mariadbd >/dev/null || pkgs+=(mariadb-server)
        command -v mariadb >/dev/null || pkgs+=(mariadb-client)
    fi
    ((${#pkgs[@]})) || return 0
    log "installing ${pkgs[*]} (apt-get)"
    command -v apt-get >/dev/null || die "missing ${pkgs[*]} and no apt-get to install them"
    # keep the packages' maintainer scripts from starting the services (no init system here anyway)
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0 aptlog=/tmp/evseg-slurm-apt.$$.log
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >"$aptlog" 2>&1; then
        log "apt-get install failed; running apt-get update and trying again"
        { apt-get update && apt-get install -y --no-install-recommends "${pkgs[@]}"; } >>"$aptlog" 2>&1 || rc=$?
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc)); then
        tail -n 30 "$aptlog" | sed 's/^/    | /' >&2
        die "apt-get install ${pkgs[*]} failed (full log: $aptlog)"
    fi
    rm -f "$aptlog"
    log "installed ${pkgs[*]}"
}
install_missing

# ---------------------------------------------------------------------------------------------------- helpers

# alive_pid, running
# shellcheck source=tests/slurm/pids.sh
source "$(dirname "${BASH_SOURCE[0]}")/pids.sh"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# die because PORT is taken: name the process that listens on it and its command line (which shows its
# EVSEG_SLURM_DIR when it is an evseg cluster's daemon), and what to do
port_taken() { # PORT WHAT
    local owner pid
    owner=$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n1 || true)
    pid=${owner##*pid=}
    if [[ -n $pid ]]; then
        owner="${owner#*((\"}"
        owner="process ${owner%%\"*} (pid $pid: $({ tr '\0' ' ' </proc/"$pid"/cmdline; } 2>/dev/null | cut -c1-200 || true))"
    else
        owner="another process"
    fi
    die "port $1 ($2) is taken by $owner. If it is a daemon of an evseg cluster with another EVSEG_SLURM_DIR, stop that cluster: EVSEG_SLURM_DIR=<its dir> bash $(dirname "${BASH_SOURCE[0]}")/stop_cluster.sh; otherwise stop that process"
}

wait_for() { # WHAT LOGFILE PIDFILE COMM CHECK...   (CHECK is a command that succeeds once it is up)
    local what=$1 logf=$2 pidf=$3 comm=$4; shift 4
    local deadline=$((SECONDS + TIMEOUT)) out=$DIR/log/check.out
    until "$@" >"$out" 2>&1; do
        if [[ -n $pidf && -z $(alive_pid "$pidf" "$comm") ]] && ((SECONDS > ${started_at:-0} + 3)); then
            die_log "$what died while starting (no live '$comm' for $pidf)" "$logf"
        fi
        ((SECONDS < deadline)) || die_log "$what did not come up within ${TIMEOUT}s (check: $*)" "$out" "$logf"
        sleep 0.2
    done
}

# write FILE from stdin only if it changed; returns 0 if it changed
write_if_changed() { # FILE MODE
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$1"
    return 0
}

stop_pid() { # PIDFILE COMM
    local pid
    pid=$(alive_pid "$1" "$2")
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    running "$pid" && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

# ---------------------------------------------------------------------------------------------------- munge
start_munge() {
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile="$MUNGE_KEY"; else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge "$MUNGE_KEY"
    chmod 700 /etc/munge
    chmod 400 "$MUNGE_KEY"
    mkdir -p "$DIR/munge"
    mkdir -p "${MUNGE_SOCKET%/*}"
    chown munge:munge "${MUNGE_SOCKET%/*}" "$DIR/munge"
    chmod 755 "${MUNGE_SOCKET%/*}" "$DIR/munge" # clients must reach the socket; munged rejects group/other write
    local pidf=$DIR/munge/munged.pid
    if [[ -n $(alive_pid "$pidf" munged) ]]; then return 0; fi
    if munge -n --socket="$MUNGE_SOCKET" 2>/dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; then
        log "using the munged that already answers on $MUNGE_SOCKET (not started here: stop_cluster.sh leaves it)"
        return 0
    fi
    log "starting munged (log $DIR/munge/munged.log)"
    started_at=$SECONDS
    runuser -u munge -- setsid munged --socket="$MUNGE_SOCKET" --pid-file="$pidf" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" --key-file="$MUNGE_KEY" \
        </dev/null >"$DIR/log/munged.out" 2>&1 ||
        die_log "munged failed to start" "$DIR/log/munged.out" "$DIR/munge/munged.log"
    wait_for munged "$DIR/munge/munged.log" "$pidf" munged \
        bash -c "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET'"
}

# ---------------------------------------------------------------------------------------------------- mariadb
DB_DIR=$DIR/mysql
DB_CNF=$DIR/etc/my.cnf
DB_PID=$DIR/run/mysqld/mariadb.pid
DB_LOG=$DIR/log/mariadb.log
# shellcheck disable=SC2120 # called with arguments through wait_for
db() { mariadb --defaults-file="$DB_CNF" -u root "$@"; }

start_mariadb() {
    write_if_changed "$DB_CNF" 644 <<EOF || true
# written by tests/slurm/start_cluster.sh: a private MariaDB for slurmdbd
[mysqld]
datadir=$DB_DIR
socket=$DB_SOCKET
pid-file=$DB_PID
port=$DB_PORT
bind-address=127.0.0.1
log-error=$DB_LOG
skip-name-resolve
innodb_buffer_pool_size=128M
innodb_log_file_size=32M
innodb_lock_wait_timeout=900
innodb_flush_log_at_trx_commit=2
innodb_doublewrite=0
max_connections=100
[client]
socket=$DB_SOCKET
EOF
    if [[ -n $(alive_pid "$DB_PID" mariadbd) ]]; then return 0; fi
    if [[ ! -d $DB_DIR/mysql ]]; then
        log "initialising the MariaDB data directory $DB_DIR"
        rm -rf "$DB_DIR"
        mkdir -p "$DB_DIR"
        chown mysql:mysql "$DB_DIR"
        mariadb-install-db --defaults-file="$DB_CNF" --user=mysql --skip-test-db \
            >"$DIR/log/mariadb-install-db.log" 2>&1 ||
            die_log "mariadb-install-db failed" "$DIR/log/mariadb-install-db.log"
    fi
    mkdir -p "$DIR/run/mysqld"
    chown mysql:mysql "$DIR/run/mysqld"
    port_busy "$DB_PORT" && port_taken "$DB_PORT" "EVSEG_SLURM_DB_PORT, for MariaDB"
    log "starting mariadbd on 127.0.0.1:$DB_PORT (log $DB_LOG)"
    touch "$DB_LOG"
    chown mysql:mysql "$DB_LOG"
    started_at=$SECONDS
    setsid mariadbd --defaults-file="$DB_CNF" --user=mysql </dev/null >>"$DB_LOG" 2>&1 &
    wait_for mariadbd "$DB_LOG" "$DB_PID" mariadbd db -e 'SELECT 1'
    # shellcheck disable=SC2119
    db <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

# ---------------------------------------------------------------------------------------------------- configs
node_line() {
    # `slurmd -C`: NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24103
    local c mem
    c=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=') || die "slurmd -C printed no NodeName line"
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$c")
    [[ -n $mem ]] || die "no RealMemory in: $c"
    mem=$((mem * 95 / 100)) # slightly below: a node reporting less than RealMemory is drained
    # shellcheck disable=SC2001
    c=$(sed -e 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost/' \
        -e "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$c")
    echo "$c State=UNKNOWN"
}

write_configs() {
    local acct_lines
    if [[ $ACCOUNTING == 1 ]]; then
        acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations
# keep sbatch --comment (the snakemake plugin writes rule_<name> there) for sacct -o Comment
AccountingStoreFlags=job_comment
# sacct -o AllocTRES then shows gres/gpu=N
AccountingStorageTRES=gres/gpu"
    else
        acct_lines="AccountingStorageType=accounting_storage/none"
    fi
    local node
    node=$(node_line)
    mkdir -p "$ETC"
    SLURM_CONF_CHANGED=0
    # Stand-in GPUs: slurmd accepts only character or block devices as gres files, so they are made like
    # /dev/null (1,3). SLURM allocates them per job and sets CUDA_VISIBLE_DEVICES; torch finds no CUDA.
    mkdir -p "$DIR/dev"
    local i
    for ((i = 0; i < GPUS; i++)); do
        [[ -c $DIR/dev/gpu$i ]] || mknod "$DIR/dev/gpu$i" c 1 3
    done
    write_if_changed "$GRES_CONF_FILE" 644 <<EOF && SLURM_CONF_CHANGED=1
# Written by evseg tests/slurm/start_cluster.sh: $GPUS stand-in GPUs (character devices like /dev/null)
NodeName=localhost Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]
EOF
    write_if_changed "$SLURM_CONF_FILE" 644 <<EOF && SLURM_CONF_CHANGED=1
# Written by evseg tests/slurm/start_cluster.sh (state in $DIR). Single node, no cgroups, stand-in GPUs.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
MailProg=/bin/true
# no cgroups in this container: track processes by /proc, bind CPUs with sched_setaffinity
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5,sched_min_interval=0,batch_sched_delay=0
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
$acct_lines
GresTypes=gpu
$node Gres=gpu:$GPUS
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
EOF
    DBD_CONF_CHANGED=0
    if [[ $ACCOUNTING == 1 ]]; then
        write_if_changed "$DBD_CONF_FILE" 600 <<EOF && DBD_CONF_CHANGED=1
# Written by evseg tests/slurm/start_cluster.sh (state in $DIR)
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------------- slurm
start_slurmdbd() {
    local pidf=$DIR/run/slurmdbd.pid logf=$DIR/log/slurmdbd.log
    if ((DBD_CONF_CHANGED)) && [[ -n $(alive_pid "$pidf" slurmdbd) ]]; then
        log "slurmdbd.conf changed: restarting slurmdbd"
        stop_pid "$pidf" slurmdbd
    fi
    if [[ -z $(alive_pid "$pidf" slurmdbd) ]]; then
        port_busy "$DBD_PORT" && port_taken "$DBD_PORT" "slurmdbd's"
        log "starting slurmdbd (log $logf)"
        started_at=$SECONDS
        setsid slurmdbd </dev/null >>"$logf" 2>&1 || die_log "slurmdbd failed to start" "$logf"
        wait_for slurmdbd "$logf" "$pidf" slurmdbd sacctmgr -n list cluster
    fi
    # the associations: cluster, account, root in it (sacctmgr exits 1 on "Nothing new added")
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die_log "sacctmgr add cluster $CLUSTER failed" "$logf"
    fi
    if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="evseg tests" Organization=evseg \
            >/dev/null || die_log "sacctmgr add account $ACCOUNT failed" "$logf"
    fi
    if ! sacctmgr -n -s -P list user root format=account | grep -qx "$ACCOUNT"; then
        sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" \
            >/dev/null || die_log "sacctmgr add user root failed" "$logf"
    fi
}

start_slurmctld() {
    local pidf=$DIR/run/slurmctld.pid logf=$DIR/log/slurmctld.log
    CTLD_WAS_DOWN=1
    if [[ -n $(alive_pid "$pidf" slurmctld) ]]; then
        CTLD_WAS_DOWN=0
        ((SLURM_CONF_CHANGED)) || return 0
        log "slurm.conf changed: restarting slurmctld and slurmd"
        stop_pid "$DIR/run/slurmd.pid" slurmd
        stop_pid "$pidf" slurmctld
    fi
    port_busy "$CTLD_PORT" && port_taken "$CTLD_PORT" "slurmctld's"
    log "starting slurmctld (log $logf)"
    STARTED_SLURM=1
    started_at=$SECONDS
    setsid slurmctld </dev/null >>"$logf" 2>&1 || die_log "slurmctld failed to start" "$logf"
    wait_for slurmctld "$logf" "$pidf" slurmctld scontrol ping
    scontrol ping | grep -q UP || die_log "slurmctld is not UP (scontrol ping)" "$logf"
}

# shellcheck disable=SC2329 # called through wait_for
slurmd_alive() { [[ -n $(alive_pid "$DIR/run/slurmd.pid" slurmd) ]]; }

start_slurmd() {
    local pidf=$DIR/run/slurmd.pid logf=$DIR/log/slurmd.log
    if [[ -n $(alive_pid "$pidf" slurmd) ]]; then return 0; fi
    port_busy "$SLURMD_PORT" && port_taken "$SLURMD_PORT" "slurmd's"
    log "starting slurmd (log $logf)"
    STARTED_SLURM=1
    started_at=$SECONDS
    local steps_alive=0 pid
    for pid in $(pgrep -x slurmstepd || true); do running "$pid" && steps_alive=1; done
    setsid slurmd -N localhost </dev/null >>"$logf" 2>&1 || die_log "slurmd failed to start" "$logf"
    wait_for slurmd "$logf" "$pidf" slurmd slurmd_alive
    ((CTLD_WAS_DOWN && !steps_alive)) && cancel_stale_jobs
    return 0
}

# After a reboot or a kill of the whole cluster, slurmctld restores the jobs of its previous life from its saved
# state, though none of them can run (no slurmstepd is alive): 'running' ones keep the node allocated and pending
# ones would start, so a new job waits behind them (the smoke job's srun timed out so). Only then are they
# cancelled: after a restart for a changed slurm.conf, running jobs live on in their slurmstepd.
cancel_stale_jobs() {
    local jobs
    jobs=$(squeue -h -o %i) || die_log "squeue failed" "$DIR/log/slurmctld.log"
    jobs=$(tr '\n' ' ' <<<"$jobs")
    [[ -n ${jobs// /} ]] || return 0
    log "cancelling the jobs of the cluster's previous life (no slurmstepd is alive to run them): $jobs"
    # shellcheck disable=SC2086 # one argument per job id
    scancel $jobs || die_log "scancel $jobs failed" "$DIR/log/slurmctld.log"
}

wait_node_ready() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while :; do
        state=$(sinfo -h -n localhost -p cpu -o %T 2>/dev/null | head -n1 || true)
        case $state in
        idle | mixed | allocated | completing) break ;;
        drain* | down* | fail*)
            ((SECONDS > deadline - TIMEOUT + 5)) && {
                scontrol show node localhost >&2 || true
                die_log "node localhost is '$state' (reason above)" "$DIR/log/slurmd.log"
            }
            ;;
        esac
        if [[ -z $(alive_pid "$DIR/run/slurmd.pid" slurmd) ]]; then
            die_log "slurmd is not running" "$DIR/log/slurmd.log"
        fi
        ((SECONDS < deadline)) || die_log "node localhost not idle within ${TIMEOUT}s (state '$state')" "$DIR/log/slurmd.log"
        sleep 0.2
    done
    log "cluster '$CLUSTER' up: node localhost $state; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
}

# After a (re)start, one tiny job end to end (munge credential, slurmstepd, CPU binding): slurmctld's first
# scheduling pass comes ~2-3 s after it starts, so this also makes the next job start at once.
smoke_job() {
    local out queued
    queued=$(squeue -h -o %i | wc -l) || die_log "squeue failed" "$DIR/log/slurmctld.log"
    if ((queued)); then # it would wait behind them (after a restart for a changed slurm.conf)
        log "no test job: $queued job(s) already queued or running"
        return 0
    fi
    out=$(timeout 60 srun -p cpu -J evseg-smoke -N1 -n1 -c1 -t 1 \
        python3 -c 'import os; print(len(os.sched_getaffinity(0)))' 2>&1) ||
        die_log "a test job (srun -p cpu -c1 ...) failed: $out" "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"
    [[ $out == 1 ]] ||
        die_log "a test job with -c1 saw '$out' CPUs, not 1 (task/affinity)" "$DIR/log/slurmd.log"
    log "test job ran (srun -c1 sees 1 CPU)"
}

# one cluster per machine: /etc/slurm/slurm.conf and the ports are shared
other=""
if [[ -f $SLURM_CONF_FILE ]]; then # absent on a machine where SLURM was just installed
    other=$(sed -n 's/^# Written by evseg .*(state in \(.*\))\..*/\1/p' "$SLURM_CONF_FILE" | head -n1)
fi
if [[ -n $other && $(realpath -m "$other") != $(realpath -m "$DIR") ]]; then
    alive=()
    for daemon in run/slurmctld.pid:slurmctld run/slurmd.pid:slurmd run/slurmdbd.pid:slurmdbd \
        run/mysqld/mariadb.pid:mariadbd; do
        pid=$(alive_pid "$other/${daemon%:*}" "${daemon#*:}")
        [[ -z $pid ]] || alive+=("${daemon#*:} (pid $pid)")
    done
    ((${#alive[@]} == 0)) || die "another evseg cluster (EVSEG_SLURM_DIR=$other, in $SLURM_CONF_FILE) is running: ${alive[*]}. One cluster per machine: use it (EVSEG_SLURM_DIR=$other) or stop it first: EVSEG_SLURM_DIR=$other bash $(dirname "${BASH_SOURCE[0]}")/stop_cluster.sh"
fi

mkdir -p "$DIR"/{run,log,state/ctld,state/slurmd,etc}
chmod 755 "$DIR" "$DIR/run" "$DIR/log"

STARTED_SLURM=0
start_munge
[[ $ACCOUNTING == 1 ]] && start_mariadb
write_configs
[[ $ACCOUNTING == 1 ]] && start_slurmdbd
start_slurmctld
start_slurmd
wait_node_ready
((STARTED_SLURM)) && smoke_job
exit 0
