#!/usr/bin/env bash
# A local multi-node Ray cluster on one machine: a head node (no CPUs for tasks by default, the dashboard and
# the job API) and N worker nodes, each its own raylet with its own CPUs, its own temporary directory and a
# custom resource naming it (node_1, node_2, ...). Everything binds 127.0.0.1. Jobs submitted to it
# (`signclip submit ...`) spread their tasks over the worker nodes like on a real cluster.
#
# With --isolated, each worker node runs in a mount namespace of its own (unshare, as root) with private,
# empty /tmp, $HOME/.cache and /dev/shm: like the pods of a real cluster, nodes share no disk, so a path one
# node (or the driver) wrote means nothing on another; share data through object storage (S3). Where mount
# namespaces are not available, the script says so and starts worker nodes that share this machine's disk.
#
#   cluster/local_cluster.sh start [--workers N] [--cpus-per-node C] [--isolated] [options]   # prints addresses
#   cluster/local_cluster.sh status [--temp-dir DIR]
#   cluster/local_cluster.sh kill-node K [--temp-dir DIR]        # SIGKILL worker node K whole (a lost node)
#   cluster/local_cluster.sh add-node [--temp-dir DIR]           # one more worker node, like the others
#   cluster/local_cluster.sh stop [--temp-dir DIR]               # stops this cluster only
#
# Options (start):
#   --workers N          worker nodes (default 2)
#   --cpus-per-node C    CPUs each worker node offers Ray (default 1)
#   --head-cpus C        CPUs the head offers for tasks (default 0: the head only coordinates)
#   --port-base P        first of the ports this cluster uses (default 26500): GCS P, per node a block of 10,
#                        worker processes P+1000 and up (100 per node)
#   --dashboard-port P   dashboard and job API (default 8265)
#   --object-store-mb M  object store per node in MiB (default 256; spills to disk beyond)
#   --isolated           worker nodes share no disk with each other or with this machine (see above)
#   --serve-mode M       fast (default, as cluster/Dockerfile sets it: Serve's throughput-optimized mode with
#                        an HAProxy ingress) or default (Serve's Python proxy); every node's processes get it
#   --temp-dir DIR       where the nodes keep sessions and logs (default: $SIGNCLIP_CLUSTER_DIR, else
#                        $TMPDIR/signclip-ray-<uid>); `stop` and `status` find the cluster through it. An
#                        isolated node sees its own folder of it as /tmp/ray; its logs stay readable here.
# Options (stop):
#   --grace S            seconds the processes get to exit after SIGTERM before SIGKILL (default 10)
#
# `stop` first stops the cluster's running jobs through the job API, then ends exactly the processes of
# this cluster (those started in its sessions or naming its temporary directory); other Ray instances on
# the machine are left alone (never `ray stop`, which ends every Ray on the machine). Logs stay in the
# temporary directory.
#
# Ray 2.60 turns token authentication on by default; export RAY_AUTH_MODE=disabled for a throwaway local
# cluster. The Ray of the project's .venv is used when there is one ($RAY overrides), and its bin/ goes first
# on the PATH of the cluster, so `python` in a job's entrypoint is that same interpreter.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${RAY:-}" ]]; then
    :
elif [[ -x "$ROOT/.venv/bin/ray" ]]; then
    RAY="$ROOT/.venv/bin/ray"
else
    RAY="$(command -v ray || true)"
fi
[[ -n "$RAY" && -x "$RAY" ]] || { echo "error: no ray executable (make setup, or set RAY=...)" >&2; exit 2; }
BIN="$(cd "$(dirname "$RAY")" && pwd)"
PY="$BIN/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
export PATH="$BIN:$PATH"

usage() {
    local text; text="$(sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//')"
    if [[ "${1:-2}" == 0 ]]; then echo "$text"; else echo "$text" >&2; fi
    exit "${1:-2}"
}

cmd="${1:-}"; [[ -n "$cmd" ]] || usage 2; shift
[[ "$cmd" == -h || "$cmd" == --help ]] && usage 0
WORKERS=2
CPUS=1
HEAD_CPUS=0
PORT_BASE=26500
DASHBOARD_PORT=8265
OBJECT_STORE_MB=256
GRACE=10
ISOLATED=0
SERVE_MODE=fast
KILL_NODE=""
if [[ "$cmd" == kill-node ]]; then
    KILL_NODE="${1:-}"; shift || true
    [[ "$KILL_NODE" =~ ^[1-9][0-9]*$ ]] || { echo "error: kill-node needs a worker node number (1, 2, ...)" >&2; exit 2; }
fi
TEMP_DIR="${SIGNCLIP_CLUSTER_DIR:-${TMPDIR:-/tmp}/signclip-ray-$(id -u)}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workers) WORKERS="$2"; shift 2 ;;
        --cpus-per-node) CPUS="$2"; shift 2 ;;
        --head-cpus) HEAD_CPUS="$2"; shift 2 ;;
        --port-base) PORT_BASE="$2"; shift 2 ;;
        --dashboard-port) DASHBOARD_PORT="$2"; shift 2 ;;
        --object-store-mb) OBJECT_STORE_MB="$2"; shift 2 ;;
        --temp-dir) TEMP_DIR="$2"; shift 2 ;;
        --isolated) ISOLATED=1; shift ;;
        --serve-mode) SERVE_MODE="$2"; shift 2 ;;
        --grace) GRACE="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "error: unknown option $1" >&2; usage 2 ;;
    esac
done
for n in WORKERS CPUS HEAD_CPUS PORT_BASE DASHBOARD_PORT OBJECT_STORE_MB GRACE; do
    [[ "${!n}" =~ ^[0-9]+$ ]] || { echo "error: ${n,,} must be a whole number, got '${!n}'" >&2; exit 2; }
done
[[ "$SERVE_MODE" == fast || "$SERVE_MODE" == default ]] || {
    echo "error: --serve-mode must be fast or default, got '$SERVE_MODE'" >&2; exit 2; }
(( WORKERS >= 1 && WORKERS <= 50 )) || { echo "error: --workers must be 1..50" >&2; exit 2; }
(( CPUS >= 1 )) || { echo "error: --cpus-per-node must be at least 1" >&2; exit 2; }
(( PORT_BASE >= 1024 && PORT_BASE + 1000 + 100 * (WORKERS + 1) <= 65535 )) || {
    echo "error: --port-base $PORT_BASE leaves no room for $WORKERS workers' ports" >&2; exit 2; }
mkdir -p "$TEMP_DIR"
TEMP_DIR="$(cd "$TEMP_DIR" && pwd)"
STATE="$TEMP_DIR/cluster.env"
SESSIONS="$TEMP_DIR/sessions"   # one process-session id per `ray start`
ADDRESS="127.0.0.1:$PORT_BASE"
DASHBOARD="http://127.0.0.1:$DASHBOARD_PORT"

# Processes of this cluster: those in the sessions its `ray start`s created, or naming its temp dir.
cluster_pids() {
    local sids=""
    [[ -f "$SESSIONS" ]] && sids="$(tr '\n' ' ' < "$SESSIONS")"
    # patterns go through the environment, not awk's arguments, so that awk never matches itself
    ps -eo pid=,sid=,args= | SIDS=" $sids " DIR="$TEMP_DIR/" SELF="$$" awk '
        { pid = $1; sid = $2; $1 = ""; $2 = "" }
        pid == ENVIRON["SELF"] { next }
        index(ENVIRON["SIDS"], " " sid " ") > 0 { print pid; next }
        { rest = $0
          while ((i = index(rest, ENVIRON["DIR"])) > 0) {
              rest = substr(rest, i + length(ENVIRON["DIR"]))
              if (rest ~ /^(head|node_[0-9]+)\/session_/) { print pid; next }
          } }'
}

alive() { [[ -n "$(cluster_pids)" ]]; }

ports_free() {  # every port given is free on 127.0.0.1, else name the first taken one
    "$PY" - "$@" <<'EOF'
import socket, sys
for port in sys.argv[1:]:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(port)))
        except OSError:
            print(f"error: port {port} is in use (choose another --port-base / --dashboard-port)", file=sys.stderr)
            sys.exit(1)
EOF
}

# ray start with its daemons in a session of their own, remembered for `stop`.
start_node() {
    local log="$1"; shift
    setsid "$RAY" start --node-ip-address=127.0.0.1 --disable-usage-stats \
        --object-store-memory=$((OBJECT_STORE_MB * 1024 * 1024)) "$@" >>"$log" 2>&1 &
    local pid=$!
    echo "$pid" >> "$SESSIONS"
    if ! wait "$pid"; then
        echo "error: ray start failed; see $log" >&2
        tail -n 20 "$log" >&2
        return 1
    fi
}

# The same, inside a mount namespace of its own: private /tmp (its Ray folder bound in from DIR), $HOME/.cache
# and /dev/shm. Everything else of the machine (the interpreter, the network) is shared, as the image and the
# network of a real cluster's pods are.
start_isolated_node() {
    local log="$1" dir="$2"; shift 2
    mkdir -p "$dir" "$HOME/.cache"
    setsid unshare --mount --propagation private -- bash -c '
        set -e
        dir="$1"; shift
        mount --bind "$dir" "$HOME/.cache"  # parked there while /tmp (which may hold it) is replaced
        mount -t tmpfs -o mode=1777 tmpfs /tmp
        mkdir -p /tmp/ray
        mount --bind "$HOME/.cache" /tmp/ray
        umount "$HOME/.cache"
        mount -t tmpfs tmpfs "$HOME/.cache"
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm
        unset TMPDIR
        exec "$@"' isolated-node "$dir" "$RAY" start --node-ip-address=127.0.0.1 --disable-usage-stats \
        --object-store-memory=$((OBJECT_STORE_MB * 1024 * 1024)) --temp-dir=/tmp/ray "$@" >>"$log" 2>&1 &
    local pid=$!
    echo "$pid" >> "$SESSIONS"
    if ! wait "$pid"; then
        echo "error: ray start (isolated) failed; see $log" >&2
        tail -n 20 "$log" >&2
        return 1
    fi
}

# Serve reads its mode from the environment of each node's processes (signclip.service.SERVE_MODES).
use_serve_mode() {
    local on=0; [[ "$1" == fast ]] && on=1
    export RAY_SERVE_THROUGHPUT_OPTIMIZED=$on RAY_SERVE_ENABLE_HA_PROXY=$on
    # a stopping ingress replica drains 2 s instead of 30: no load balancer in front of these nodes waits on it
    export RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S="${RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S:-2}"
}

namespaces_work() {  # root, and a kernel that lets us mount in a private mount namespace
    mkdir -p "$HOME/.cache"
    unshare --mount --propagation private -- mount -t tmpfs tmpfs "$HOME/.cache" >/dev/null 2>&1
}

node_ports() {  # node index -> ray start options for its ports
    local b=$((PORT_BASE + 10 * $1))
    local w=$((PORT_BASE + 1000 + 100 * $1))
    echo "--node-manager-port=$((b + 2)) --object-manager-port=$((b + 3)) --metrics-export-port=$((b + 4))" \
         "--dashboard-agent-listen-port=$((b + 5)) --dashboard-agent-grpc-port=$((b + 6))" \
         "--runtime-env-agent-port=$((b + 7)) --min-worker-port=$w --max-worker-port=$((w + 99))"
}

wait_node() {  # until the node offering resource $1 is alive
    "$PY" - "$DASHBOARD" "$1" <<'EOF'
import sys, time
from ray.util.state import list_nodes
dashboard, resource = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 120
while True:
    try:
        if any(n.state == "ALIVE" and resource in n.resources_total for n in list_nodes(address=dashboard)):
            sys.exit(0)
    except Exception:  # the state API may not answer for a moment
        pass
    if time.monotonic() > deadline:
        print(f"error: no live node with {resource} after 120 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(1)
EOF
}

wait_ready() {  # until the job API answers and $1 nodes are alive
    "$PY" - "$DASHBOARD" "$1" <<'EOF'
import json, sys, time, urllib.request
dashboard, want = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen(f"{dashboard}/api/version", timeout=5):
            pass
        with urllib.request.urlopen(f"{dashboard}/nodes?view=summary", timeout=5) as r:
            nodes = json.load(r)["data"]["summary"]
        alive = sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE")
        if alive >= want:
            sys.exit(0)
    except (OSError, ValueError, KeyError):
        alive = 0
    if time.monotonic() > deadline:
        print(f"error: {alive}/{want} nodes alive after 120 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(1)
EOF
}

stop_jobs() {  # running jobs first, so their drivers end cleanly
    [[ -f "$STATE" ]] || return 0
    local dashboard; dashboard="$(sed -n 's/^dashboard=//p' "$STATE")"
    timeout 60 "$PY" - "$dashboard" <<'EOF' || true
import sys
try:
    from ray.job_submission import JobSubmissionClient
    client = JobSubmissionClient(sys.argv[1])
    for job in client.list_jobs():
        if not job.status.is_terminal():
            print(f"stopping job {job.submission_id}")
            client.stop_job(job.submission_id)
except Exception as e:  # the cluster may be half down already
    print(f"(could not stop jobs through the job API: {e})")
EOF
}

do_stop() {
    stop_jobs
    local pids; pids="$(cluster_pids)"
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 1 $((GRACE * 2))); do
            pids="$(cluster_pids)"; [[ -z "$pids" ]] && break
            sleep 0.5
        done
        pids="$(cluster_pids)"
        # shellcheck disable=SC2086
        [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    fi
    rm -f "$STATE" "$SESSIONS"
    echo "stopped the cluster of $TEMP_DIR (logs kept there)"
}

case "$cmd" in
start)
    if alive; then
        echo "error: a cluster of $TEMP_DIR is running; stop it first ($0 stop --temp-dir $TEMP_DIR)" >&2
        [[ -f "$STATE" ]] && cat "$STATE" >&2
        exit 1
    fi
    rm -f "$STATE" "$SESSIONS"
    ports=("$PORT_BASE" "$DASHBOARD_PORT" "$((PORT_BASE + 1))")
    for k in $(seq 0 "$WORKERS"); do
        for j in 2 3 4 5 6 7; do ports+=("$((PORT_BASE + 10 * k + j))"); done
    done
    ports_free "${ports[@]}" || exit 1
    LOG="$TEMP_DIR/start.log"
    : > "$LOG"
    trap 'echo "start failed: stopping what was started" >&2; do_stop >&2' ERR
    use_serve_mode "$SERVE_MODE"
    # shellcheck disable=SC2046
    start_node "$LOG" --head --port="$PORT_BASE" --num-cpus="$HEAD_CPUS" --num-gpus=0 \
        --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
        --ray-client-server-port=$((PORT_BASE + 1)) --temp-dir="$TEMP_DIR/head" $(node_ports 0)
    if (( ISOLATED )) && ! namespaces_work; then
        echo "warning: --isolated needs mount namespaces (root and unshare --mount); they are not available" \
             "here, so the worker nodes share this machine's disk (paths may leak between nodes)" >&2
        ISOLATED=0
    fi
    for k in $(seq 1 "$WORKERS"); do
        if (( ISOLATED )); then
            # shellcheck disable=SC2046
            start_isolated_node "$LOG" "$TEMP_DIR/node_$k" --address="$ADDRESS" --num-cpus="$CPUS" --num-gpus=0 \
                --resources="{\"node_$k\": 1}" $(node_ports "$k")
        else
            # shellcheck disable=SC2046
            start_node "$LOG" --address="$ADDRESS" --num-cpus="$CPUS" --num-gpus=0 \
                --resources="{\"node_$k\": 1}" --temp-dir="$TEMP_DIR/node_$k" $(node_ports "$k")
        fi
    done
    wait_ready "$((WORKERS + 1))"
    trap - ERR
    {
        echo "address=$ADDRESS"
        echo "dashboard=$DASHBOARD"
        echo "workers=$WORKERS"
        echo "cpus_per_node=$CPUS"
        echo "isolated=$ISOLATED"
        echo "serve_mode=$SERVE_MODE"
        echo "port_base=$PORT_BASE"
        echo "object_store_mb=$OBJECT_STORE_MB"
        echo "temp_dir=$TEMP_DIR"
    } > "$STATE"
    echo "Ray cluster up: head (0 task CPUs unless --head-cpus) + $WORKERS worker nodes x $CPUS CPU" \
         "(node_1..node_$WORKERS)$( (( ISOLATED )) && echo ", each in its own mount namespace")"
    cat "$STATE"
    echo "submit jobs with: signclip submit JOB ... --address $DASHBOARD"
    echo "stop it with:     $0 stop --temp-dir $TEMP_DIR"
    ;;
status)
    if alive && [[ -f "$STATE" ]]; then
        cat "$STATE"
    else
        echo "no cluster of $TEMP_DIR is running"
        exit 1
    fi
    ;;
add-node)
    { [[ -f "$STATE" ]] && alive; } || { echo "error: no cluster of $TEMP_DIR is running" >&2; exit 1; }
    state() { sed -n "s/^$1=//p" "$STATE"; }
    WORKERS="$(state workers)"; CPUS="$(state cpus_per_node)"; ISOLATED="$(state isolated)"
    PORT_BASE="$(state port_base)"; OBJECT_STORE_MB="$(state object_store_mb)"
    DASHBOARD="$(state dashboard)"; ADDRESS="$(state address)"
    use_serve_mode "$(state serve_mode)"
    k=$((WORKERS + 1))
    (( PORT_BASE + 1000 + 100 * (k + 1) <= 65535 )) || { echo "error: no ports left for node $k" >&2; exit 2; }
    ports=(); for j in 2 3 4 5 6 7; do ports+=("$((PORT_BASE + 10 * k + j))"); done
    ports_free "${ports[@]}" || exit 1
    if (( ISOLATED )); then
        # shellcheck disable=SC2046
        start_isolated_node "$TEMP_DIR/start.log" "$TEMP_DIR/node_$k" --address="$ADDRESS" --num-cpus="$CPUS" \
            --num-gpus=0 --resources="{\"node_$k\": 1}" $(node_ports "$k")
    else
        # shellcheck disable=SC2046
        start_node "$TEMP_DIR/start.log" --address="$ADDRESS" --num-cpus="$CPUS" --num-gpus=0 \
            --resources="{\"node_$k\": 1}" --temp-dir="$TEMP_DIR/node_$k" $(node_ports "$k")
    fi
    wait_node "node_$k"
    sed -i "s/^workers=.*/workers=$k/" "$STATE"
    echo "added worker node $k (node_$k) x $CPUS CPU"
    ;;
kill-node)
    [[ -f "$SESSIONS" ]] || { echo "error: no cluster of $TEMP_DIR is running" >&2; exit 1; }
    sid="$(sed -n "$((KILL_NODE + 1))p" "$SESSIONS")"  # line 1 is the head's session
    [[ -n "$sid" ]] || { echo "error: the cluster of $TEMP_DIR has no worker node $KILL_NODE" >&2; exit 2; }
    pids="$(ps -eo pid=,sid= | awk -v s="$sid" '$2 == s { print $1 }')"
    [[ -n "$pids" ]] || { echo "worker node $KILL_NODE has no process left"; exit 0; }
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    echo "killed worker node $KILL_NODE: $(echo $pids | wc -w) processes (raylet, workers and agents)"
    ;;
stop)
    do_stop
    ;;
*)
    usage 2
    ;;
esac
