#!/usr/bin/env bash
# The hostile-traffic suite and soak (not a test: it takes minutes). Real release bloscar
# processes on loopback, client -> outbound -> inbound -> app, each case attacking the
# pair for a bounded time while a well-behaved client calls through it; prints Markdown
# tables. See docs/hostile-traffic.md.
#
#   scripts/hostile.sh                  every case but the long call (about 6 minutes)
#   scripts/hostile.sh --long           the same and the 330 s call to a grpcio server
#   scripts/hostile.sh --cases long-call
#   scripts/hostile.sh --soak [MINUTES] the soak alone (default 30 minutes)
#
# Other arguments go to the suite: --cases a,b,... --attack-secs N --memory-budget VALUE
# --memory-floor-mib N --bloscar PATH --logs DIR. BLOSCAR_MEMORY_BUDGET, when set, is
# given to every sidecar. CARGO_PROFILE picks the cargo profile (default: release).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
long_call=false
while (($#)); do
    case $1 in
        --soak)
            if [[ ${2:-} =~ ^[0-9]+$ ]]; then
                args+=(--soak "$2")
                shift
            else
                args+=(--soak 30)
            fi
            ;;
        --long)
            long_call=true
            args+=("$1")
            ;;
        --cases)
            [[ ${2:-} == *long-call* ]] && long_call=true
            args+=("$1" "${2:-}")
            shift
            ;;
        *) args+=("$1") ;;
    esac
    shift
done

profile="${CARGO_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --locked --profile "$profile" --bin bloscar --example hostile
if $long_call; then
    # The long call's server is grpcio (grpc-core), from the tests' Python environment.
    bash scripts/venvs.sh
    args+=(--python "$PWD/.venvs/triton-client/bin/python")
fi
label="commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ', src modified')"
exec "$target/$profile/examples/hostile" --bloscar "$target/$profile/bloscar" \
    --label "$label" "${args[@]}"
