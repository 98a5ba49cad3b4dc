#!/usr/bin/env bash
# Runs the core criterion benchmark (benches/core.rs) and prints one table: per data set
# and setting, the bare Blosc calls beside bloscar's encode/decode of the whole KServe
# message (locator + container + checksum), and the overhead over bare Blosc in percent.
# Times are thread CPU time, each benchmark's fastest sample: the figures least
# disturbed by other load on the machine.
# Extra arguments go to criterion (e.g. a filter such as `core/smooth`).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo bench --bench core -- "$@" 2>&1 | tee "$log" | grep -E '^(core/|ratio )' >&2 || true

python3 - "$target/criterion" "$log" <<'PY'
import json, pathlib, sys
root, log = pathlib.Path(sys.argv[1]), sys.argv[2]
best = {}
for bench in root.glob("core_*/**/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    sample = json.loads((bench.parent / "sample.json").read_text())
    data = meta["group_id"].split("/", 1)[1]
    # The fastest sample: the least disturbed by other processes on a shared machine.
    best[(data, meta["function_id"], meta.get("value_str"))] = min(
        t / n for t, n in zip(sample["times"], sample["iters"]))
ratios = {}
for line in open(log):
    if line.startswith("ratio "):
        _, data, setting, bare, whole = line.split()
        ratios[(data, setting)] = (float(bare), float(whole))
ms = lambda ns: ns / 1e6
size = 4 * 1024 * 1024
print(f"{'data':7} {'setting':15} {'ratio':>7} {'memcpy':>7} {'crc32':>7} | {'blosc c':>8} {'encode':>8} {'ovh %':>6} | "
      f"{'blosc d':>8} {'decode':>8} {'ovh %':>6} | {'enc MB/s':>8} {'dec MB/s':>8}")
print("(ms of thread CPU time, fastest sample; ratio = tensor / compressed tensor; memcpy and crc32 of\n the whole message; ovh % = encode or decode over the bare Blosc call; MB/s of the 4 MiB message)")
for data in ("smooth", "mask", "random"):
    copy = best.get((data, "memcpy", None))
    crc = best.get((data, "crc32", None), float("nan"))
    for setting in ("lz4:5:byte", "zstd:1:byte", "blosclz:5:byte"):
        get = lambda f: best.get((data, f, setting))
        c, e, d, r = get("blosc_compress"), get("encode"), get("blosc_decompress"), get("decode")
        if None in (c, e, d, r, copy):
            continue
        ratio = ratios.get((data, setting), (float("nan"),))[0]
        print(f"{data:7} {setting:15} {ratio:7.2f} {ms(copy):7.3f} {ms(crc):7.3f} | {ms(c):8.3f} {ms(e):8.3f} "
              f"{100 * (e - c) / c:6.1f} | {ms(d):8.3f} {ms(r):8.3f} {100 * (r - d) / d:6.1f} | "
              f"{size / e * 1e3:8.0f} {size / r * 1e3:8.0f}")
PY
