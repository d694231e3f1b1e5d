#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tests/slurm/start_cluster.sh started: cancels its jobs, then stops
# slurmd, slurmctld, slurmdbd, mariadbd and munged, each by the pid file start_cluster.sh keeps under
# $EVSEG_SLURM_DIR (default /tmp/evseg-slurm). Processes it did not start are left alone.
#
#   bash tests/slurm/stop_cluster.sh           # stop; state (job ids, accounting DB) is kept for the next start
#   bash tests/slurm/stop_cluster.sh --purge   # stop and delete $EVSEG_SLURM_DIR (next start begins afresh)
set -euo pipefail

DIR=${EVSEG_SLURM_DIR:-/tmp/evseg-slurm}
PURGE=0
case ${1:-} in
--purge) PURGE=1 ;;
"") ;;
*) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

log() { printf '[stop_cluster] %s\n' "$*"; }

[[ $(id -u) -eq 0 ]] || { echo "[stop_cluster] ERROR: must run as root (the daemons run as root)" >&2; exit 1; }
# not while a start_cluster.sh (from any clone) is starting daemons
# shellcheck source=tests/slurm/lock.sh
source "$(dirname "${BASH_SOURCE[0]}")/lock.sh"
run_locked "$@"

# shellcheck source=tests/slurm/pids.sh
source "$(dirname "${BASH_SOURCE[0]}")/pids.sh"

stop() { # NAME PIDFILE COMM
    local pid
    pid=$(alive_pid "$2" "$3")
    if [[ -z $pid ]]; then
        rm -f "$2"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
        log "$1 (pid $pid) did not exit in 15s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$2"
    log "stopped $1 (pid $pid)"
}

if [[ -n $(alive_pid "$DIR/run/slurmctld.pid" slurmctld) ]]; then
    # the jobs of this cluster (all of them are ours): cancel, so no slurmstepd outlives slurmd
    mapfile -t jobs < <(squeue -h -o %i 2>/dev/null || true)
    if ((${#jobs[@]})); then
        log "cancelling jobs: ${jobs[*]}"
        scancel --full "${jobs[@]}" 2>/dev/null || true
        for _ in $(seq 100); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.1; done
    fi
fi
stop slurmd "$DIR/run/slurmd.pid" slurmd
stop slurmctld "$DIR/run/slurmctld.pid" slurmctld
stop slurmdbd "$DIR/run/slurmdbd.pid" slurmdbd
stop mariadbd "$DIR/run/mysqld/mariadb.pid" mariadbd
stop munged "$DIR/munge/munged.pid" munged

if ((PURGE)); then
    rm -rf "$DIR"
    log "removed $DIR"
fi
