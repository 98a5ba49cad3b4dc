#!/usr/bin/env bash
# Creates the Python environments the end-to-end suite uses, under .venvs/ in the
# repository. Idempotent: an environment whose packages import is left alone. Quiet
# unless it fails.
#
#   .venvs/pytriton  nvidia-pytriton (a real Triton server) + tritonclient[grpc] + numpy.
#                    Built from Debian's /usr/bin/python3.11: Triton's Python backend stub
#                    links against Debian's libpython3.11.so (package libpython3.11).
#   .venvs/tfs       min-tfs-client + protobuf 3.20.3 + numpy (TF Serving stubs and
#                    grpcio), made by scripts/venvs.sh. Separate, because
#                    tritonclient[grpc] needs protobuf >= 6.30.
set -euo pipefail
cd "$(dirname "$0")/.."

triton_python=${BLOSCAR_TRITON_PYTHON:-/usr/bin/python3.11}

# make_venv PYTHON NAME IMPORT_CHECK PACKAGE...
make_venv() {
    local interpreter=$1 name=$2 check=$3
    shift 3
    local dir=.venvs/$name
    if [[ -x $dir/bin/python ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p .venvs
    "$interpreter" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    "$dir/bin/python" -c "$check"
}

make_venv "$triton_python" pytriton \
    "import pytriton.triton, tritonclient.grpc, numpy" \
    nvidia-pytriton "tritonclient[grpc]" numpy
bash scripts/venvs.sh
