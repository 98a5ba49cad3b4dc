# Two network namespaces joined by a veth pair, for the link benchmarks; sourced by
# scripts/bench-link.sh and scripts/link-follow.sh (root only).
#
# The sourcing script sets ns_client, ns_server, veth_client, veth_server, ip_client,
# ip_server and logs (the folder of the processes' logs), and may set stop_wait_tenths
# (how long a process group may take to stop after SIGTERM, in tenths of a second).
# It gets `start`, `pair_up` and a clean-up that runs on every exit.

# Process groups this run started (each child is started with setsid).
pgroups=()

# Stops this run's process groups: SIGTERM, then SIGKILL after stop_wait_tenths.
stop_groups() {
    local pgid i
    for pgid in "${pgroups[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    for pgid in "${pgroups[@]}"; do
        for ((i = 0; i < ${stop_wait_tenths:-50}; i++)); do
            kill -0 -- "-$pgid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    done
    pgroups=()
}

# Stops this run's processes, then anything still inside the two namespaces (a run
# killed with SIGKILL leaves its processes there), and deletes the namespaces.
cleanup() {
    set +e
    stop_groups
    local ns pid
    for ns in "$ns_client" "$ns_server"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
        fi
    done
    for ns in "$ns_client" "$ns_server"; do
        if ip netns list | grep -qw "$ns"; then
            sleep 1
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            ip netns del "$ns" 2>/dev/null
        fi
    done
}
on_exit() {
    trap '' INT TERM # a second signal must not cut the clean-up short
    cleanup
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME NAMESPACE COMMAND...: runs COMMAND in NAMESPACE as a new process group, output
# in $logs/NAME.log; sets started_pid.
start() {
    local name=$1 ns=$2
    shift 2
    setsid ip netns exec "$ns" "$@" >"$logs/$name.log" 2>&1 &
    started_pid=$!
    pgroups+=("$started_pid")
}

# Clears an earlier run's leftovers, then makes the namespaces and the veth pair.
pair_up() {
    cleanup
    ip netns add "$ns_client"
    ip netns add "$ns_server"
    ip link add "$veth_client" netns "$ns_client" type veth peer name "$veth_server" netns "$ns_server"
    ip -n "$ns_client" addr add "$ip_client/24" dev "$veth_client"
    ip -n "$ns_server" addr add "$ip_server/24" dev "$veth_server"
    local ns
    for ns in "$ns_client" "$ns_server"; do ip -n "$ns" link set lo up; done
    ip -n "$ns_client" link set "$veth_client" up
    ip -n "$ns_server" link set "$veth_server" up
}
