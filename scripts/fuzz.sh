#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for the given number of seconds each (default 60)
# and prints the executions and crashes per target. Crash inputs land in
# fuzz/artifacts/<target>/. Needs cargo-fuzz (installed from crates.io when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes sanitizer flags that stable rustc accepts only in bootstrap mode.
export RUSTC_BOOTSTRAP=1

# Seed the corpora with the test vectors of docs/wire-format.md.
python3 - <<'PY'
import pathlib, re
doc = pathlib.Path("docs/wire-format.md").read_text()
seeds = {"container_decode": [], "container_decode_signed": [],
         "ndarray_decode_signed": [], "locate_round_trip": [], "locate_stream": [],
         "container_stream_decode": [], "container_stream_decode_signed": []}
framed = lambda record: b"\x01" + len(record).to_bytes(4, "big") + record
for block in re.findall(r"```\n([0-9a-f \n]+?)```", doc):
    data = bytes.fromhex(block.replace("\n", " "))
    if data.startswith(b"BLCR"):
        seeds["container_decode"].append(data)
        seeds["container_decode_signed"].append(data[:-4])
        seeds["container_stream_decode"].append(framed(data))
    elif data.startswith(b"BLND"):
        seeds["ndarray_decode_signed"].append(data[:-4])
    else:
        seeds["locate_round_trip"].append(data)
        # The first byte picks the chunk sizes: 1 feeds the message at once.
        seeds["locate_stream"].append(b"\x01" + data)
# Version-2 runs travel as gRPC messages already; also two runs on one stream.
runs = [bytes.fromhex(b.replace("\n", " ")) for b in re.findall(r"```run\n([0-9a-f \n]+?)```", doc)]
for stream in runs + [b"".join(runs)]:
    seeds["container_stream_decode"].append(stream)
    seeds["container_stream_decode_signed"].append(stream)
for target, inputs in seeds.items():
    corpus = pathlib.Path("fuzz/corpus") / target
    corpus.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(inputs):
        (corpus / f"vector-{i}").write_bytes(data)
PY

summary=()
for target in $(cargo fuzz list --fuzz-dir fuzz); do
    log=$(mktemp)
    status=0
    cargo fuzz run --fuzz-dir fuzz "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
    summary+=("$(printf '%-26s %14s %8s %6s' "$target" "${runs:-?}" "$crashes" "$status")")
    if [ "$status" -ne 0 ] || [ -z "$runs" ]; then tail -40 "$log"; fi
    rm -f "$log"
done
printf '%-26s %14s %8s %6s\n' target executions crashes exit
printf '%s\n' "${summary[@]}"
