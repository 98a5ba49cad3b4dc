#!/usr/bin/env bash
# Creates .venvs/skimage (scikit-image, Pillow, numpy) in the repository: the real images
# that the tuner tests and scripts/tuner-check.sh feed to the tuner. Idempotent: an
# environment whose packages import is left alone. Quiet unless it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/make-venv.sh
make_venv "${BLOSCAR_PYTHON:-python3}" skimage "import skimage.data, PIL.Image, numpy" \
    scikit-image pillow numpy
