#!/usr/bin/env bash
# Benchmark of proxy pairs on loopback (not a test): the bloscar sidecar pair (and
# optionally a baseline build of it) against a pair of plain nginx gRPC proxies, in front
# of one echo server. Cases: latency and throughput of unary calls, and peak memory per
# stream of huge messages. Prints Markdown tables; see docs/proxy-benchmark.md.
#
# Extra arguments go to the benchmark, e.g.
#   --cases latency,throughput,rss-1g,rss-64x64m,rss-100x60m-2conn
#                        (default: latency,throughput)
#   --baseline PATH      a second bloscar binary measured the same way
#   --bloscar PATH       the binary under test (default: the one this script builds)
#   --json-out PATH      the figures as JSON too
#   --codec SETTING      BLOSCAR_CODEC of the pairs (default: auto)
#   --memory-budget SIZE BLOSCAR_MEMORY_BUDGET of the pairs in the memory cases
#   --hop-tls            also each binary's pair with mutual TLS between the sidecars
#
# nginx is only needed by this benchmark, not by the tests: when it is missing, the
# script installs Debian's nginx-light (root) or asks for it.
# CARGO_PROFILE picks the cargo profile (default: release).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bench-proxy: installing nginx-light for the nginx pair" >&2
        apt-get install -y nginx-light >/dev/null || {
            apt-get update >/dev/null && apt-get install -y nginx-light >/dev/null
        }
    else
        echo "bench-proxy: nginx not found; install nginx-light (or pass --nginx PATH)" >&2
    fi
fi

profile="${CARGO_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --profile "$profile" --bin bloscar --example bench_proxy
exec "$target/$profile/examples/bench_proxy" --bloscar "$target/$profile/bloscar" "$@"
