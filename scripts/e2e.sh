#!/usr/bin/env bash
# The end-to-end suite: real Triton and TF Serving clients and servers talking through a
# pair of bloscar sidecars, with the bytes on the link between them counted.
#
#   scripts/e2e.sh            build bloscar, make the Python venvs, run every case
#   scripts/e2e.sh --direct   the same cases without sidecars (the baseline)
#
# Without arguments, the Triton cases (gRPC and KServe v2 REST) then run a second time with
# mutual TLS between the sidecars (--hop-mtls; certificates made for the run with the
# openssl command line): TLS must not change a byte the apps see, and the inbound must
# refuse no handshake.
#
# Extra arguments go to tests/e2e/run.py (see its --help). The sidecars are a release
# build, as deployed: the auto setting times real compression to decide whether it pays,
# and an unoptimised Blosc would make it (rightly) decide that it does not.
# BLOSCAR_E2E_PROFILE=debug reuses the test suite's debug build instead.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${BLOSCAR_E2E_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-target}
if [[ $profile == release ]]; then
    cargo build --release --locked --bin bloscar
else
    cargo build --locked --bin bloscar
fi
# Absolute: the runner starts its processes from other working directories.
bloscar=$(realpath "$target_dir/$profile/bloscar")
bash scripts/venv-pytriton.sh
# The metrics check parses each sidecar's /metrics with prometheus_client (.venvs/prometheus).
bash scripts/venvs.sh
if [[ $# -gt 0 ]]; then
    exec .venvs/pytriton/bin/python tests/e2e/run.py --bloscar "$bloscar" "$@"
fi
.venvs/pytriton/bin/python tests/e2e/run.py --bloscar "$bloscar"
# Only the Triton cases, without the link guard: TLS is a property of the hop, which one
# server shows as well as four.
.venvs/pytriton/bin/python tests/e2e/run.py --bloscar "$bloscar" \
    --servers triton,triton-rc,triton-http --no-link-guard --hop-mtls
