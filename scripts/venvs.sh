#!/usr/bin/env bash
# Creates the Python virtual environments the tests use, under .venvs/ in the repository.
# Idempotent: an environment whose packages import is left alone. Quiet unless it fails.
#
#   .venvs/triton-client  tritonclient[grpc] + numpy   (KServe v2 / Triton protobuf classes)
#   .venvs/tfs            min-tfs-client + protobuf 3.20.3 + numpy (TF Serving protobuf classes)
#   .venvs/blosc          python-blosc (decodes docs/wire-format.md's vectors in Python)
#   .venvs/prometheus     prometheus-client (parses /metrics in tests/metrics_scrape.rs)
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/make-venv.sh
python=${BLOSCAR_PYTHON:-python3}

make_venv "$python" triton-client "import tritonclient.grpc.service_pb2, numpy, ml_dtypes" "tritonclient[grpc]" numpy
make_venv "$python" tfs "import min_tfs_client, tensorflow.core.framework.tensor_pb2, numpy" \
    min-tfs-client "protobuf==3.20.3" numpy
make_venv "$python" blosc "import blosc" blosc
make_venv "$python" prometheus "import prometheus_client.parser, prometheus_client.openmetrics.parser" \
    prometheus-client
