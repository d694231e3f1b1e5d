# Shared by start_cluster.sh and stop_cluster.sh: is the daemon of a pid file alive?

# pid of a daemon from its pid file, if that process is alive and is what we expect; else empty
alive_pid() { # PIDFILE COMM
    local pid
    [[ -s $1 ]] || return 0
    pid=$(tr -dc 0-9 <"$1")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && running "$pid" && echo "$pid"
    return 0
}

# PID exists and is no zombie (PID 1 here is not an init that reaps orphans at once: an exited daemon can stay
# a zombie for a few seconds)
running() { # PID
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && ${st:0:1} != Z ]]
}
