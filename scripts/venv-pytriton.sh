#!/usr/bin/env bash
# Creates the Python environments the end-to-end suite uses, under .venvs/ in the
# repository. Idempotent: an environment whose packages import is left alone. Quiet
# unless it fails.
#
#   .venvs/pytriton  nvidia-pytriton (a real Triton server) + tritonclient[grpc,http] + numpy,
#                    and requests for the REST cases' hand-written client.
#                    Built from Debian's /usr/bin/python3.11: Triton's Python backend stub
#                    links against Debian's libpython3.11.so (package libpython3.11).
#   .venvs/tfs       min-tfs-client + protobuf 3.20.3 + numpy (TF Serving stubs and
#                    grpcio), made by scripts/venvs.sh. Separate, because
#                    tritonclient[grpc] needs protobuf >= 6.30.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/make-venv.sh
triton_python=${BLOSCAR_TRITON_PYTHON:-/usr/bin/python3.11}

make_venv "$triton_python" pytriton \
    "import pytriton.triton, tritonclient.grpc, tritonclient.http, numpy, requests" \
    nvidia-pytriton "tritonclient[grpc,http]" numpy requests
bash scripts/venvs.sh
