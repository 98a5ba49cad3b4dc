#!/usr/bin/env bash
# Shows how close the auto-tuner's pick comes to the best setting of the full grid
# (every codec x level 1-9 x shuffle, measured on the whole tensor) at 100 Mbit/s,
# 1 Gbit/s and 10 Gbit/s, on the built-in demo tensors and on real images shipped with
# scikit-image, and that JPEG bytes are stored. Prints the tables of `bloscar bench`
# and a summary; exits non-zero when a pick costs more than 10% over the best, or JPEG
# bytes would be compressed.
#
#   scripts/tuner-check.sh [OUTDIR]     (default: target/tuner-check)
#
# The verdict rests on timings, so it belongs here rather than in the test suite; run it
# on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/tuner-check}
mkdir -p "$out"
bash scripts/venv-skimage.sh
.venvs/skimage/bin/python tests/python/arrays.py "$out/arrays"
cargo build --release --quiet
bloscar=${CARGO_TARGET_DIR:-target}/release/bloscar

run() {
    local name=$1
    shift
    "$bloscar" bench --top 3 --json-out "$out/$name.json" "$@" | tee "$out/$name.txt"
}
run demo
run images "$out/arrays/images"

python3 - "$out/demo.json" "$out/images.json" <<'PY'
import json, sys

bad = []
print("\n%-20s %8s  %-16s %10s  %-16s %10s  %7s" % (
    "tensor", "link", "best", "best ms", "tuner pick", "tuner ms", "ratio"))
for path in sys.argv[1:]:
    for t in json.load(open(path))["tensors"]:
        for l in t["links"]:
            mark = ""
            if "jpeg" in t["name"]:
                if l["tuner"] != "store":
                    mark = "  <- JPEG bytes must be stored"
            elif l["tuner_over_best"] > 1.10:
                mark = "  <- more than 10% over the best"
            if mark:
                bad.append(t["name"])
            print("%-20s %7gM  %-16s %10.3f  %-16s %10.3f  %7.3f%s" % (
                t["name"], l["link_mbps"], l["best"], l["best_ms"], l["tuner"],
                l["tuner_ms"], l["tuner_over_best"], mark))
if bad:
    sys.exit("tuner check failed for: " + ", ".join(sorted(set(bad))))
print("\nevery pick within 10% of the grid's best; JPEG bytes stored")
PY
