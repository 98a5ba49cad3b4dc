#!/usr/bin/env bash
# The end-to-end suite: real Triton and TF Serving clients and servers talking through a
# pair of bloscar sidecars, with the bytes on the link between them counted.
#
#   scripts/e2e.sh            build bloscar, make the Python venvs, run every case
#   scripts/e2e.sh --direct   the same cases without sidecars (the baseline)
#
# Extra arguments go to tests/e2e/run.py (see its --help). BLOSCAR_E2E_PROFILE=release
# builds an optimised binary; the default debug build shares the test suite's compiled
# dependencies, and the suite's few tens of megabytes do not need more speed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${BLOSCAR_E2E_PROFILE:-debug}
target_dir=${CARGO_TARGET_DIR:-target}
if [[ $profile == release ]]; then
    cargo build --release --locked --bin bloscar
else
    cargo build --locked --bin bloscar
fi
bash scripts/venv-pytriton.sh
exec .venvs/pytriton/bin/python tests/e2e/run.py --bloscar "$target_dir/$profile/bloscar" "$@"
