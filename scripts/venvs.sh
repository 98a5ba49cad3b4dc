#!/usr/bin/env bash
# Creates the Python virtual environments the tests use, under .venvs/ in the repository.
# Idempotent: an environment whose packages import is left alone. Quiet unless it fails.
#
#   .venvs/triton-client  tritonclient[grpc] + numpy   (KServe v2 / Triton protobuf classes)
#   .venvs/tfs            min-tfs-client + protobuf 3.20.3 + numpy (TF Serving protobuf classes)
#   .venvs/blosc          python-blosc (decodes docs/wire-format.md's vectors in Python)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${BLOSCAR_PYTHON:-python3}

# Tests may run this script concurrently: one creator at a time.
mkdir -p .venvs
exec 9>.venvs/.venvs.lock
flock 9

# make_venv NAME IMPORT_CHECK PACKAGE...
make_venv() {
    local name=$1 check=$2
    shift 2
    local dir=.venvs/$name
    if [[ -x $dir/bin/python ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p .venvs
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    "$dir/bin/python" -c "$check"
}

make_venv triton-client "import tritonclient.grpc.service_pb2, numpy, ml_dtypes" "tritonclient[grpc]" numpy
make_venv tfs "import min_tfs_client, tensorflow.core.framework.tensor_pb2, numpy" \
    min-tfs-client "protobuf==3.20.3" numpy
make_venv blosc "import blosc" blosc
