"""Turns the link benchmark's per-link records (client.py --json-out) into Markdown tables
and one JSON file.

Usage: python report.py --json-out ALL.json LINK.json...      (standard library only)

Per link: one row per tensor with its size, the median round trip per mode, the
speed-ups of pair over direct and over baseline (and of http-pair over http-direct when
both ran), then the link bytes per call per mode,
then the pass total (sum of the per-tensor medians) per mode, and the sidecars' metrics.
"""

import argparse
import json
import re
import sys
from pathlib import Path


# Every call here is ModelInfer: the label only lengthens the lines.
METHOD_LABEL = re.compile(r',?method="/inference.GRPCInferenceService/ModelInfer"')


def markdown(head: list, rows: list, numeric_from: int = 1) -> str:
    """A Markdown table whose columns from NUMERIC_FROM on are right-aligned."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(head)]

    def line(cells):
        return "| " + " | ".join(
            str(c).rjust(w) if i >= numeric_from else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i >= numeric_from else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), rule, *map(line, rows)])


def ratio(numerator, denominator) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def link_report(record: dict) -> str:
    modes = record["modes"]
    tensors = record["tensors"]
    out = [f"### Link: {record['link']} ({record['rounds']} rounds, median ms per ModelInfer round trip)", ""]

    # (faster, slower reference): the speed-up columns.
    versus = [("pair", "direct"), ("pair", "baseline")]
    if "http-pair" in modes and "http-direct" in modes:
        versus.append(("http-pair", "http-direct"))
    head = ["tensor", "MB", *modes, *(f"{a} vs {b}" for a, b in versus)]
    rows = []
    for name, t in tensors.items():
        ms = t["median_ms"]
        rows.append([name, f"{t['bytes'] / 1e6:.2f}", *(f"{ms[m]:.1f}" for m in modes),
                     *(ratio(ms.get(b), ms.get(a)) for a, b in versus)])
    totals = {m: sum(t["median_ms"][m] for t in tensors.values()) for m in modes}
    rows.append(["**pass total**", f"{sum(t['bytes'] for t in tensors.values()) / 1e6:.2f}",
                 *(f"{totals[m]:.1f}" for m in modes),
                 *(ratio(totals.get(b), totals.get(a)) for a, b in versus)])
    out.append(markdown(head, rows))

    if all(t.get("link_bytes_per_call") for t in tensors.values()):
        out += ["", "Link MB per round trip (both directions, counted on the client's veth, headers included):", ""]
        head = ["tensor", "MB x2", *modes]
        rows = [[name, f"{2 * t['bytes'] / 1e6:.2f}", *(f"{t['link_bytes_per_call'][m] / 1e6:.2f}" for m in modes)]
                for name, t in tensors.items()]
        rows.append(["**pass total**", f"{2 * sum(t['bytes'] for t in tensors.values()) / 1e6:.2f}",
                     *(f"{sum(t['link_bytes_per_call'][m] for t in tensors.values()) / 1e6:.2f}" for m in modes)])
        out.append(markdown(head, rows))

    metrics = record.get("metrics", {})
    if metrics:
        out += ["", "<details><summary>Sidecars' /metrics after this link (bloscar_ series about the link"
                " or bytes)</summary>", "", "```"]
        for label, lines in metrics.items():
            out.append(f"# {label}")
            out += sorted(METHOD_LABEL.sub("", line) for line in lines) or ["(none)"]
        out += ["```", "", "</details>"]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--setup", default="{}", help="JSON object describing the run, copied into --json-out")
    parser.add_argument("records", nargs="+", type=Path)
    args = parser.parse_args()

    records = [json.loads(p.read_text()) for p in args.records]
    setup = json.loads(args.setup)
    if setup:
        print("Setup: " + "; ".join(f"{k} {v}" for k, v in setup.items()) + "\n")
    print("\n\n".join(link_report(r) for r in records))
    if args.json_out:
        args.json_out.write_text(json.dumps({"setup": setup, "links": records}, indent=1))
        print(f"\n(all figures in {args.json_out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
