#!/usr/bin/env bash
# Creates .venvs/skimage (scikit-image, Pillow, numpy) in the repository: the real images
# that the tuner tests and scripts/tuner-check.sh feed to the tuner. Idempotent: an
# environment whose packages import is left alone. Quiet unless it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${BLOSCAR_PYTHON:-python3}
dir=.venvs/skimage
check="import skimage.data, PIL.Image, numpy"

if [[ -x $dir/bin/python ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
    exit 0
fi
rm -rf "$dir"
mkdir -p .venvs
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check scikit-image pillow numpy
"$dir/bin/python" -c "$check"
