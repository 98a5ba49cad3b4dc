#!/usr/bin/env bash
# The JSON log of a real run, for reading what operators get: a sidecar process with both
# roles (BLOSCAR_LOG_FORMAT=json, the access log on) between tritonclient and a Python
# KServe echo model, two ModelInfer calls, SIGTERM; then an invalid configuration and a
# listener that cannot bind. Prints every log line and each exit status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/venvs.sh
PY="$PWD/.venvs/triton-client/bin/python"
cargo build --quiet --locked --bin bloscar
BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/bloscar"
WORK="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
APP=$(free_port) INBOUND=$(free_port) OUTBOUND=$(free_port) ADMIN=$(free_port)

"$PY" scripts/log_excerpt/echo_server.py "127.0.0.1:$APP" &
pids+=($!)
env -i BLOSCAR_MODE=both BLOSCAR_INBOUND_LISTEN="127.0.0.1:$INBOUND" BLOSCAR_INBOUND_FORWARD="127.0.0.1:$APP" \
    BLOSCAR_OUTBOUND_LISTEN="127.0.0.1:$OUTBOUND" BLOSCAR_OUTBOUND_FORWARD="127.0.0.1:$INBOUND" \
    BLOSCAR_ADMIN_LISTEN="127.0.0.1:$ADMIN" BLOSCAR_CODEC=lz4:5:byte \
    BLOSCAR_LOG_FORMAT=json BLOSCAR_LOG=info,bloscar::access=debug "$BIN" 2>"$WORK/sidecar.log" &
sidecar=$!
pids+=($sidecar)
for _ in $(seq 100); do
    "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$ADMIN/ready')" 2>/dev/null && break
    sleep 0.1
done
"$PY" scripts/log_excerpt/client.py "127.0.0.1:$OUTBOUND"
kill -TERM "$sidecar"
status=0
wait "$sidecar" || status=$?
echo "== a sidecar pair: start, two calls with their access lines, SIGTERM (exit $status)"
cat "$WORK/sidecar.log"

echo "== an invalid configuration"
status=0
env -i BLOSCAR_LOG_FORMAT=json BLOSCAR_MODE=outbound "$BIN" || status=$?
echo "(exit $status)"

echo "== a listener that cannot bind (the admin port is taken)"
status=0
env -i BLOSCAR_LOG_FORMAT=json BLOSCAR_INBOUND_LISTEN=127.0.0.1:0 BLOSCAR_ADMIN_LISTEN="127.0.0.1:$APP" "$BIN" ||
    status=$?
echo "(exit $status)"
