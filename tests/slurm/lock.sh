# Shared by start_cluster.sh and stop_cluster.sh: one of them at a time on a machine, whichever clone or
# EVSEG_SLURM_DIR it runs from (/etc/slurm, munge's socket and the ports are per machine). Two test suites
# that start the cluster at the same moment otherwise both start daemons and one fails on a taken port.

LOCK=${EVSEG_SLURM_LOCK:-/run/lock/evseg-slurm.lock}
LOCK_WAIT=${EVSEG_SLURM_LOCK_WAIT:-900} # seconds; a start that installs the packages takes about 15 s

lock_owner() { cat "$LOCK.owner" 2>/dev/null || echo "owner unknown"; }

# Run the calling script again under the lock (flock -o: the daemons it starts do not inherit the lock's
# file descriptor, so the lock ends with the script). Returns only inside the locked run; the caller exits
# with the locked run's status, or 75 when the lock stayed taken for LOCK_WAIT seconds.
run_locked() { # "$@" of the script
    if [[ ${EVSEG_SLURM_LOCK_HELD:-} == "$LOCK" ]]; then
        export -n EVSEG_SLURM_LOCK_HELD # the daemons must not pass it on
        printf '%s in %s (pid %s, EVSEG_SLURM_DIR=%s) since %s\n' "${0##*/}" \
            "$(cd -- "$(dirname -- "$0")" >/dev/null && pwd)" "$$" "$DIR" "$(date +%T)" >"$LOCK.owner"
        trap 'rm -f "$LOCK.owner"' EXIT
        return 0
    fi
    [[ $LOCK == /* ]] || { echo "EVSEG_SLURM_LOCK must be an absolute path, not '$LOCK'" >&2; exit 1; }
    mkdir -p "$(dirname -- "$LOCK")"
    local rc=0
    flock -n -E 75 "$LOCK" true || rc=$?
    if ((rc == 75)); then
        printf '[%s] waiting (at most %ss) for the other start/stop that holds %s: %s\n' "${0##*/}" \
            "$LOCK_WAIT" "$LOCK" "$(lock_owner)"
    elif ((rc)); then
        echo "[${0##*/}] ERROR: cannot take the lock $LOCK (flock exit $rc); run as root, or set EVSEG_SLURM_LOCK" >&2
        exit 1
    fi
    rc=0
    EVSEG_SLURM_LOCK_HELD=$LOCK flock -o -w "$LOCK_WAIT" -E 75 "$LOCK" bash "$0" "$@" || rc=$?
    if ((rc == 75)); then
        printf '[%s] ERROR: %s was held for more than %ss by: %s\nIf that script hangs, stop it (ps -ef | grep _cluster.sh); set EVSEG_SLURM_LOCK_WAIT to wait longer.\n' \
            "${0##*/}" "$LOCK" "$LOCK_WAIT" "$(lock_owner)" >&2
    fi
    exit "$rc"
}
