"""The link benchmark's client: real tritonclient ModelInfer round trips, one tensor per
request, echoed back by Triton, in several modes (paths to Triton) on one link.

Each mode is a gRPC address and a request compression, or (http://) the address of
Triton's KServe v2 HTTP/REST endpoint, called by tritonclient[http] with the tensors in
the binary extension both ways:
  MODE=HOST:PORT[,gzip]     e.g. direct=10.77.0.2:8001  pair=127.0.0.1:9441
  MODE=http://HOST:PORT     e.g. http-direct=http://10.77.0.2:8002
Rounds interleave the modes (for each round, each tensor, every mode once, in an order
that rotates round by round) so all modes see the same machine load. Before the rounds,
unmeasured calls per tensor and mode warm the connections, let the outbound sidecar
learn that its peer reads bloscar, and let the tuner make its first (inline) search.

Every answer is compared with the tensor sent (dtype, shape, bytes); a mismatch ends the
run with exit status 1. With --veth, the bytes the interface sent and received during
each measured call are added to that mode's count. After the rounds, the sidecars'
/metrics (--metrics LABEL=URL) are read and the bloscar_ lines about the link or bytes
kept. Writes everything to --json-out.

Run with the interpreter of .venvs/pytriton, inside the client namespace.
"""

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype


WARM_UP_ROUNDS = 2


class Mismatch(Exception):
    """An answer differs from the tensor sent."""


def parse_mode(text: str) -> tuple:
    name, _, target = text.partition("=")
    address, _, compression = target.partition(",")
    http = address.startswith("http://")
    if not name or not address or compression not in ("", "gzip") or (http and compression):
        raise argparse.ArgumentTypeError(f"expected MODE=HOST:PORT[,gzip] or MODE=http://HOST:PORT, got {text!r}")
    return name, address, compression or None


def connect(address: str):
    """A tritonclient for ADDRESS: HTTP/REST for http://HOST:PORT, gRPC otherwise."""
    if address.startswith("http://"):
        # One connection: the calls are sequential, as the gRPC client's are on its channel.
        return httpclient.InferenceServerClient(url=address.removeprefix("http://"), concurrency=1,
                                                network_timeout=600.0, connection_timeout=600.0)
    return grpcclient.InferenceServerClient(url=address)


def parse_label(text: str) -> tuple:
    label, _, url = text.partition("=")
    if not label or not url:
        raise argparse.ArgumentTypeError(f"expected LABEL=URL, got {text!r}")
    return label, url


def link_bytes(veth: str | None) -> int:
    """Bytes sent plus received by the client's end of the link so far."""
    if not veth:
        return 0
    stats = Path("/sys/class/net") / veth / "statistics"
    return int((stats / "tx_bytes").read_text()) + int((stats / "rx_bytes").read_text())


def round_trip(client, name: str, array: np.ndarray, compression) -> tuple:
    """One ModelInfer of tensor NAME; returns (seconds, the answer)."""
    if isinstance(client, httpclient.InferenceServerClient):
        request = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        request.set_data_from_numpy(array, binary_data=True)
        wanted = [httpclient.InferRequestedOutput(f"{name}_echo", binary_data=True)]
        start = time.perf_counter()
        result = client.infer(name, [request], outputs=wanted)
        elapsed = time.perf_counter() - start
        return elapsed, result.as_numpy(f"{name}_echo")
    request = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    request.set_data_from_numpy(array)
    wanted = [grpcclient.InferRequestedOutput(f"{name}_echo")]
    start = time.perf_counter()
    result = client.infer(name, [request], outputs=wanted, compression_algorithm=compression)
    elapsed = time.perf_counter() - start
    return elapsed, result.as_numpy(f"{name}_echo")


def check(mode: str, name: str, sent: np.ndarray, answer) -> None:
    if answer is None or answer.dtype != sent.dtype or answer.shape != sent.shape:
        got = "nothing" if answer is None else f"{answer.dtype} {answer.shape}"
        raise Mismatch(f"{mode}/{name}: sent {sent.dtype} {sent.shape}, got {got}")
    if answer.tobytes() != sent.tobytes():
        raise Mismatch(f"{mode}/{name}: the answer's bytes differ from the tensor sent")


def scrape(url: str) -> list:
    """The bloscar_ samples of a /metrics page that are about the link or about bytes."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    keep = []
    for line in text.splitlines():
        if not line.startswith("bloscar_") or "_bucket" in line:
            continue
        series = line.split("{", 1)[0].split(" ", 1)[0]
        if "link" in series or "byte" in series or "rate" in series or "mbps" in series:
            keep.append(line)
    return keep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tensors-dir", required=True, type=Path)
    parser.add_argument("--tensors", required=True, help="comma-separated names from the manifest")
    parser.add_argument("--mode", action="append", type=parse_mode, required=True, dest="modes")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--link", required=True, help="label of the link, for the report")
    parser.add_argument("--veth", help="the client end of the link, to count its bytes")
    parser.add_argument("--metrics", action="append", type=parse_label, default=[])
    parser.add_argument("--json-out", required=True, type=Path)
    args = parser.parse_args()

    manifest = json.loads((args.tensors_dir / "manifest.json").read_text())
    names = [n for n in args.tensors.split(",") if n]
    unknown = [n for n in names if n not in manifest]
    if unknown:
        parser.error(f"unknown tensors {unknown}; known: {', '.join(manifest)}")
    arrays = {n: np.load(args.tensors_dir / f"{n}.npy") for n in names}
    clients = {mode: connect(address) for mode, address, _ in args.modes}
    compression = {mode: algorithm for mode, _, algorithm in args.modes}
    modes = list(clients)

    times = {n: {m: [] for m in modes} for n in names}
    wire = {n: {m: 0 for m in modes} for n in names}
    try:
        # The first calls through a fresh pair go identity (the peer's capability is not
        # known yet; three of them were seen), so two unmeasured rounds: every tensor then
        # has had its first encoded call, with the tuner's search, before the measured ones.
        for _ in range(WARM_UP_ROUNDS):
            for name in names:
                for mode in modes:
                    _, answer = round_trip(clients[mode], name, arrays[name], compression[mode])
                    check(mode, name, arrays[name], answer)
        for r in range(args.rounds):
            for name, array in arrays.items():
                order = modes[r % len(modes):] + modes[:r % len(modes)]
                for mode in order:
                    before = link_bytes(args.veth)
                    elapsed, answer = round_trip(clients[mode], name, array, compression[mode])
                    wire[name][mode] += link_bytes(args.veth) - before
                    check(mode, name, array, answer)
                    times[name][mode].append(elapsed)
            print(f"[client] {args.link}: round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    except Mismatch as exc:
        print(f"MISMATCH on link {args.link}: {exc}", file=sys.stderr)
        return 1
    finally:
        for client in clients.values():
            client.close()

    metrics = {}
    for label, url in args.metrics:
        try:
            metrics[label] = scrape(url)
        except OSError as exc:
            metrics[label] = [f"# could not read {url}: {exc}"]

    record = {
        "link": args.link,
        "rounds": args.rounds,
        "modes": modes,
        "tensors": {
            n: {
                "dtype": manifest[n]["dtype"],
                "shape": manifest[n]["shape"],
                "bytes": manifest[n]["bytes"],
                "description": manifest[n]["description"],
                "median_ms": {m: statistics.median(times[n][m]) * 1e3 for m in modes},
                "min_ms": {m: min(times[n][m]) * 1e3 for m in modes},
                "max_ms": {m: max(times[n][m]) * 1e3 for m in modes},
                "samples_ms": {m: [round(t * 1e3, 3) for t in times[n][m]] for m in modes},
                "link_bytes_per_call": {m: wire[n][m] / args.rounds for m in modes} if args.veth else None,
            }
            for n in names
        },
        "metrics": metrics,
    }
    args.json_out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
