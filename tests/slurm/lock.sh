# Shared by start_cluster.sh and stop_cluster.sh: one of them at a time on a machine, whichever clone or
# EVSEG_SLURM_DIR it runs from (/etc/slurm, munge's socket and the ports are per machine). Two test suites
# that start the cluster at the same moment otherwise both start daemons and one fails on a taken port.

LOCK=${EVSEG_SLURM_LOCK:-/run/lock/evseg-slurm.lock}
LOCK_WAIT=${EVSEG_SLURM_LOCK_WAIT:-900} # seconds; a start that installs packages takes about 15

# Run the calling script again under the lock (flock -o: the daemons it starts do not inherit the lock's
# file descriptor, so the lock ends with the script). Returns only inside the locked run.
run_locked() { # "$@" of the script
    [[ ${EVSEG_SLURM_LOCK_HELD:-} == "$LOCK" ]] && {
        printf '%s in %s (pid %s, EVSEG_SLURM_DIR=%s) since %s\n' "${0##*/}" "$(cd "$(dirname "$0")" && pwd)" "$$" "$DIR" "$(date +%T)" \
            >"$LOCK.owner"
        trap 'rm -f "$LOCK.owner"' EXIT
        return 0
    }
    mkdir -p "${LOCK%/*}"
    if ! flock -n "$LOCK" true; then
        printf '[%s] waiting (at most %ss) for the other start/stop that holds %s: %s\n' "${0##*/}" \
            "$LOCK_WAIT" "$LOCK" "$(cat "$LOCK.owner" 2>/dev/null || echo "owner unknown")"
    fi
    local rc=0
    EVSEG_SLURM_LOCK_HELD=$LOCK flock -o -w "$LOCK_WAIT" -E 75 "$LOCK" bash "$0" "$@" || rc=$?
    if ((rc == 75)); then
        printf '[%s] ERROR: %s was held for more than %ss by: %s\nIf that script hangs, stop it (ps -ef | grep _cluster.sh); set EVSEG_SLURM_LOCK_WAIT to wait longer.\n' \
            "${0##*/}" "$LOCK" "$LOCK_WAIT" "$(cat "$LOCK.owner" 2>/dev/null || echo "owner unknown")" >&2
    fi
    exit "$rc"
}
