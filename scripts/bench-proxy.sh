#!/usr/bin/env bash
# Benchmark of the sidecar pair (not a test): added latency of a 1 KiB unary call, time
# of a 4 MiB FP32 tensor call, both direct and through an outbound + inbound pair on
# loopback, and each sidecar's resident memory idle and under 64 concurrent streams.
# Prints Markdown tables. Extra arguments go to the benchmark, e.g. --codec zstd:1:byte.
#
# CARGO_PROFILE picks the cargo profile (default: release).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${CARGO_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --profile "$profile" --bin bloscar --example bench_proxy
exec "$target/$profile/examples/bench_proxy" --bloscar "$target/$profile/bloscar" "$@"
