#!/usr/bin/env bash
# Runs the tuner's criterion benchmark (benches/tuner.rs) and prints one table: per demo
# tensor, the tuner's pick at 1 Gbit/s, the steady-state cost the tuner adds to each
# message (cache lookup + drift check) beside Blosc compressing the tensor with that pick
# (or, when the tensor is stored, beside copying it), and the cost of one full search.
# Times are thread CPU time, each benchmark's fastest sample.
# Extra arguments go to criterion (e.g. a filter such as `tuner/mask_u8`).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

# Earlier runs may have stored results under other picks' names.
rm -rf "$target"/criterion/tuner_*
cargo bench --bench tuner -- "$@" 2>&1 | grep -E '^tuner/' >&2 || true

python3 - "$target/criterion" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
best = {}
for bench in root.glob("tuner_*/**/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    sample = json.loads((bench.parent / "sample.json").read_text())
    _, tensor, setting = meta["group_id"].split("/", 2)
    best[(tensor, setting, meta["function_id"])] = min(
        t / n for t, n in zip(sample["times"], sample["iters"]))
print(f"{'tensor':11} {'pick @1G':15} {'per message':>12} {'compress':>10} {'memcpy':>9} {'overhead':>9} {'search':>9}")
print("(choose + observe on a remembered key, in ns; compress, memcpy and search in ms of thread CPU\n"
      " time; overhead = per-message cost over the compress time, or over the memcpy when stored)")
for tensor, setting in sorted({(t, s) for t, s, _ in best}):
    get = lambda f: best.get((tensor, setting, f))
    step, comp, copy, search = get("choose_observe"), get("compress"), get("memcpy"), get("search")
    if step is None or copy is None:
        continue
    base = comp if comp is not None else copy
    comp_s = f"{comp / 1e6:10.3f}" if comp is not None else f"{'-':>10}"
    search_s = f"{search / 1e6:9.2f}" if search is not None else f"{'-':>9}"
    print(f"{tensor:11} {setting:15} {step:12.0f} {comp_s} {copy / 1e6:9.3f} {100 * step / base:8.3f}% {search_s}")
PY
