#!/usr/bin/env bash
# Shows how fast the sidecars' measured link rate follows a change of the link (not a
# test). Two network namespaces joined by a veth pair shaped with tc tbf; in the server
# namespace a TF Serving echo app (tests/e2e/tfs_echo_server.py) behind an inbound
# bloscar, in the client namespace an outbound bloscar and a client calling through it
# without pause (one call at a time, a compressible float32 tensor, every echo checked bit
# for bit). The tbf rate changes during the run (`tc qdisc change`, both ends) while the
# outbound's bloscar_link_rate_bytes_per_second is polled. Default sidecar configuration
# (the link is measured, BLOSCAR_LINK_MBPS unset).
#
# Needs root (ip netns, tc). Prints Markdown tables; docs/link-benchmark.md explains them.
# Run with --help for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

usage() {
    cat <<'EOF'
Usage: scripts/link-follow.sh [options]

  --rates LIST      tbf rates in Mbit/s, in order (default 100,1000,100)
  --at LIST         seconds at which the rate changes to the next one (default 20,40)
  --duration S      length of the run in seconds (default 60)
  --band F          a rate is followed once the measurement stays within this share of
                    it (default 0.3: ±30%)
  --tensor-mb N     size of the tensor sent in each call (default 4)
  --bloscar PATH    the binary (default $CARGO_TARGET_DIR/release/bloscar,
                    CARGO_TARGET_DIR defaulting to target)
  --python PATH     an interpreter with grpcio and the TF Serving stubs
                    (default .venvs/tfs/bin/python; scripts/venvs.sh makes it)
  --log LEVEL       BLOSCAR_LOG of both sidecars (default info; bloscar=debug shows
                    every link sample)
  --out DIR         logs and the run's JSON (default $CARGO_TARGET_DIR/link-follow)
  -h, --help        this text
EOF
}

die() {
    echo "link-follow: $*" >&2
    exit 2
}

target_dir=${CARGO_TARGET_DIR:-target}
rates=100,1000,100
at=20,40
duration=60
band=0.3
tensor_mb=4
bloscar=$target_dir/release/bloscar
python=$repo/.venvs/tfs/bin/python
log_level=info
out=$target_dir/link-follow
while (($#)); do
    case $1 in
        --rates) rates=${2:?}; shift 2 ;;
        --at) at=${2?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --band) band=${2:?}; shift 2 ;;
        --tensor-mb) tensor_mb=${2:?}; shift 2 ;;
        --bloscar) bloscar=${2:?}; shift 2 ;;
        --python) python=${2:?}; shift 2 ;;
        --log) log_level=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
[[ $EUID -eq 0 ]] || die "needs root (ip netns, tc)"
[[ -x $bloscar ]] || die "no binary at $bloscar (cargo build --release --locked --bin bloscar, or --bloscar PATH)"
[[ -x $python ]] || die "no interpreter at $python (bash scripts/venvs.sh, or --python PATH)"
bloscar=$(realpath "$bloscar")

# A configuration inherited from the caller's shell would change what is measured.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^BLOSCAR_' || true)

ns_client=lfollow-c
ns_server=lfollow-s
veth_client=lfollow-vc
veth_server=lfollow-vs
ip_client=10.78.0.1
ip_server=10.78.0.2
mkdir -p "$out"
out=$(realpath "$out")
rm -f "$out"/*.log "$out"/*.ports "$out"/link-follow.json # an earlier run's, which would mislead

logs=$out
source scripts/netns-pair.sh

wait_ready() {
    local ns=$1 port=$2 name=$3
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$ns" curl -sf -o /dev/null "http://127.0.0.1:$port/ready" && return 0
        sleep 0.2
    done
    tail -n 30 "$out/$name.log" >&2
    die "$name not ready (log: $out/$name.log)"
}

# --- namespaces and the link (shaped by the driver) ------------------------------------
pair_up

# --- the echo app and the sidecars -------------------------------------------------------
start echo "$ns_server" "$python" tests/e2e/tfs_echo_server.py --ports-file "$out/echo.ports"
echo_pid=$started_pid
for ((i = 0; i < 300; i++)); do
    [[ -f $out/echo.ports ]] && break
    kill -0 "$echo_pid" 2>/dev/null || { tail -n 30 "$out/echo.log" >&2; die "the echo app exited early"; }
    sleep 0.2
done
[[ -f $out/echo.ports ]] || die "the echo app wrote no port (log: $out/echo.log)"
app_port=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["grpc"])' "$out/echo.ports")

start inbound "$ns_server" env BLOSCAR_LOG="$log_level" \
    BLOSCAR_MODE=inbound \
    BLOSCAR_INBOUND_LISTEN=0.0.0.0:9440 \
    BLOSCAR_INBOUND_FORWARD="127.0.0.1:$app_port" \
    BLOSCAR_ADMIN_LISTEN=127.0.0.1:9449 \
    "$bloscar"
start outbound "$ns_client" env BLOSCAR_LOG="$log_level" \
    BLOSCAR_MODE=outbound \
    BLOSCAR_OUTBOUND_LISTEN=127.0.0.1:9441 \
    BLOSCAR_OUTBOUND_FORWARD="$ip_server:9440" \
    BLOSCAR_ADMIN_LISTEN=127.0.0.1:9450 \
    "$bloscar"
wait_ready "$ns_server" 9449 inbound
wait_ready "$ns_client" 9450 outbound

# --- the run -------------------------------------------------------------------------------
echo "link-follow: tbf ${rates//,/ -> } Mbit/s (changes at ${at//,/, } s) for $duration s; logs in $out" >&2
# In the background and waited for: bash runs a trap for SIGTERM or SIGINT only once the
# foreground command ends.
setsid ip netns exec "$ns_client" "$python" scripts/link_follow/driver.py \
    --target 127.0.0.1:9441 --metrics http://127.0.0.1:9450/metrics \
    --device "$ns_client:$veth_client" --device "$ns_server:$veth_server" \
    --rates "$rates" --at "$at" --duration "$duration" --band "$band" \
    --tensor-mb "$tensor_mb" --json-out "$out/link-follow.json" &
driver_pid=$!
pgroups+=("$driver_pid")
status=0
wait "$driver_pid" || status=$?
echo >&2
echo "link-follow: the outbound's link log:" >&2
grep -h "measured the link" "$out/outbound.log" >&2 || echo "  (no estimate logged)" >&2
exit "$status"
