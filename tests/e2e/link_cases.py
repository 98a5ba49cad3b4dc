"""The link guard: the sidecars measure the link between them and decide by it.

Sends the same tensor through a sidecar pair call after call with the real Triton client
(identity model, every answer checked bit for bit), counts the bytes each call put on the
link and reads the outbound sidecar's /metrics. With --relay-control the bytes are the
relay's count (tests/e2e/relay.py, which also paces the link); without, loopback is left
bare and the bytes are the gRPC messages the outbound counted on the link side
(bloscar_message_wire_bytes_total, both directions). The sidecars run with
the default configuration: the link is measured from the calls themselves. Asserts what
the sidecars decided, never how long anything took:

  --expect compressed   (a link paced at --throttle-mbit): the outbound's estimate,
                        bloscar_link_rate_bytes_per_second, lands within 0.3x..2x of the
                        pace, and then calls cross the link compressed: the last calls'
                        link bytes are well under the tensor's, and encoded messages grow.
  --expect stored       (plain loopback): the estimate is far above any shaped link, and
                        after the cold start every call crosses the link as it is: link
                        bytes about the tensor's, and no message is encoded.

Calls continue until the decision shows or --deadline seconds pass, so a slow machine
takes longer rather than failing. Prints one JSON line per call (the runner's table) and
a last line {"link_guard": ...} with the verdict and the figures. Run with the
interpreter of .venvs/pytriton.
"""

import argparse
import json
import re
import sys
import time
import traceback
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

import tensors
from relay_counters import Meter

MODEL = "identity_fp16"
# A compressed call must cross in under this share of the stored bytes (zstd shrinks
# the tensor 1.7 times: see guard_tensor).
COMPRESSED_SHARE = 0.75
# A stored call crosses with its gRPC and HTTP/2 framing: a little over the tensor, never
# much under it.
STORED_SHARE = 0.97
# Calls in a row that must show the decision.
SETTLED_CALLS = 3
# Calls before the loopback decision is judged: the cold start, then the measurement,
# at least this many and until the outbound has taken ESTIMATE_SAMPLES measurements. Its
# estimate is the median of the last 5, and the first few of new connections are low
# (2 to 4 Gbit/s here, then up to 17, what 4 MiB in the timers' 2 ms resolution shows).
WARMUP_CALLS = 3
ESTIMATE_SAMPLES = 8
# Calls sent on loopback to judge it (after the warm-up).
STORED_CALLS = 6

SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})?\s+(\S+)$")


def guard_tensor() -> np.ndarray:
    """4 MiB of ReLU activations in float16: half of them zero, the rest noise.

    Chosen for what it takes to compress them. zstd level 1 shrinks them 1.7 times at
    about 300 MB/s: on a 40 Mbit/s link that clearly pays (the call crosses in about 60%
    of the bytes). The fast codecs (LZ4, BloscLZ, with any shuffle) shrink them at most
    1.25 times, so above about 2 Gbit/s nothing pays and the tuner stores them; the
    sidecars measure loopback at 4 to 17 Gbit/s on a busy 2-core machine. (`bloscar
    bench --link-mbps 40,1000,2000` on this tensor shows the picks.) Smooth image
    planes would not tell the two decisions apart: LZ4 with byte shuffle shrinks them
    1.28 times at over 3 GB/s, which pays even at 10 Gbit/s; float32 ReLU activations
    stop paying only above about 4 Gbit/s, too close to loopback's slower estimates.
    """
    rng = np.random.default_rng(11)
    activations = rng.normal(0, 1, 2 << 20).astype(np.float16)
    activations[activations < 0] = 0
    return activations


def metrics(url: str) -> dict:
    """{(name, labels): value} of the bloscar_ samples at URL."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1).startswith("bloscar_"):
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def total(samples: dict, name: str, label: str = "") -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and label in labels)


def settled(url: str, responses: int, deadline: float) -> dict:
    """The outbound's metrics once it has counted RESPONSES responses: it counts one when
    its last byte went to the client, which may be just after the client has it. (Not
    every request is counted: the first crosses before the outbound knows its peer.)"""
    while True:
        samples = metrics(url)
        if (total(samples, "bloscar_messages_total", 'direction="response"') >= responses
                or time.monotonic() > deadline):
            return samples
        time.sleep(0.05)


def call(client, array: np.ndarray) -> bool:
    inp = grpcclient.InferInput("INPUT", list(array.shape), np_to_triton_dtype(array.dtype))
    inp.set_data_from_numpy(array)
    result = client.infer(MODEL, [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT")])
    return tensors.same(array, result.as_numpy("OUTPUT"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="host:port of the outbound sidecar's app side")
    parser.add_argument("--metrics", required=True, help="URL of the outbound sidecar's /metrics")
    parser.add_argument("--relay-control", type=int, help="count the bytes with the relay (else: the metrics)")
    parser.add_argument("--app-route")
    parser.add_argument("--link-route")
    parser.add_argument("--expect", required=True, choices=["compressed", "stored"])
    parser.add_argument("--throttle-mbit", type=float, required=True,
                        help="the paced link's rate (the band for compressed, the floor for stored)")
    parser.add_argument("--label", required=True, help="the mode column of the report")
    parser.add_argument("--deadline", type=float, default=45, help="seconds to wait for the decision")
    args = parser.parse_args()

    array = guard_tensor()
    throttle = args.throttle_mbit * 1e6 / 8
    band = (0.3 * throttle, 2.0 * throttle)
    client = grpcclient.InferenceServerClient(url=args.url)
    calls: list = []
    failures: list = []
    encoded_at: list = []
    samples_at: list = []
    previous = [metrics(args.metrics)]

    def one_call() -> dict:
        record = {"suite": "link", "tensor": f"ReLU FP16 {array.nbytes >> 20} MiB", "mode": args.label,
                  "request_compression": "none", "response_compression": "none"}
        try:
            if args.relay_control:
                with Meter(args.relay_control, args.app_route, args.link_route) as meter:
                    record["bit_exact"] = call(client, array)
                record["app_bytes"] = meter.app_bytes
                record["link_bytes"] = meter.link_bytes
            else:
                record["bit_exact"] = call(client, array)
        except Exception as exc:
            record["bit_exact"] = False
            record["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        samples = settled(args.metrics, len(calls) + 1, time.monotonic() + 10)
        if not args.relay_control and record["bit_exact"]:
            # The gRPC messages as the apps and as the link carried them, both directions.
            for key, name in (("app_bytes", "bloscar_message_identity_bytes_total"),
                              ("link_bytes", "bloscar_message_wire_bytes_total")):
                record[key] = int(total(samples, name) - total(previous[0], name))
        previous[0] = samples
        record["link_rate_mbps"] = round(total(samples, "bloscar_link_rate_bytes_per_second") * 8e-6, 1)
        samples_at.append(total(samples, "bloscar_link_samples_total"))
        encoded_at.append(total(samples, "bloscar_messages_total", 'outcome="encoded"')
                          + total(samples, "bloscar_messages_total", 'outcome="decoded"'))
        print(json.dumps(record), flush=True)
        print(f"call {len(calls)}: link {record.get('link_bytes')} app {record.get('app_bytes')} "
              f"rate {record['link_rate_mbps']} Mbit/s samples {samples_at[-1]:.0f} coded {encoded_at[-1]:.0f}", file=sys.stderr, flush=True)
        calls.append(record)
        if not record["bit_exact"]:
            failures.append(f"call {len(calls)} was not bit-exact: {record.get('error', 'bytes differ')}")
        return record

    def share(record: dict) -> float:
        return record["link_bytes"] / record["app_bytes"] if record.get("app_bytes") else 1.0

    deadline = time.monotonic() + args.deadline
    verdict = None
    if args.expect == "compressed":
        # Until the estimate is in the band and the last calls all crossed compressed.
        while not failures and time.monotonic() < deadline:
            one_call()
            rate = calls[-1]["link_rate_mbps"] * 1e6 / 8
            last = calls[-SETTLED_CALLS:]
            if (len(last) == SETTLED_CALLS and band[0] <= rate <= band[1]
                    and all(share(r) < COMPRESSED_SHARE for r in last)
                    and encoded_at[-1] > encoded_at[-SETTLED_CALLS]):
                verdict = "compressed"
                break
        if verdict is None and not failures:
            failures.append(
                f"no decision to compress within {args.deadline:.0f} s ({len(calls)} calls): wanted the estimate in "
                f"{band[0] * 8e-6:.0f}..{band[1] * 8e-6:.0f} Mbit/s (pace {args.throttle_mbit:g}) and "
                f"{SETTLED_CALLS} calls under {COMPRESSED_SHARE:.0%} of the tensor's bytes on the link")
    else:
        # The cold start and the measurement; then every call is stored.
        while (not failures and time.monotonic() < deadline
               and (len(calls) < WARMUP_CALLS or samples_at[-1] < ESTIMATE_SAMPLES)):
            one_call()
        warm = len(calls)
        while not failures and len(calls) < warm + STORED_CALLS and time.monotonic() < deadline:
            one_call()
        judged = calls[warm:]
        rate = calls[-1]["link_rate_mbps"] * 1e6 / 8 if calls else 0
        if not failures:
            if len(judged) < STORED_CALLS:
                failures.append(f"only {len(calls)} calls within {args.deadline:.0f} s")
            elif rate <= band[1]:
                failures.append(f"loopback estimated at {rate * 8e-6:.0f} Mbit/s, not above "
                                f"{band[1] * 8e-6:.0f} (2x the paced link)")
            elif any(share(r) < STORED_SHARE for r in judged):
                failures.append("calls after the warm-up crossed loopback compressed: link/app shares "
                                + ", ".join(f"{share(r):.2f}" for r in judged))
            elif encoded_at[-1] != encoded_at[warm - 1]:
                failures.append(f"messages were encoded after the warm-up ({encoded_at[warm - 1]:.0f} "
                                f"-> {encoded_at[-1]:.0f})")
            else:
                verdict = "stored"
    client.close()

    print(json.dumps({"link_guard": {
        "mode": args.label,
        "expect": args.expect,
        "verdict": verdict,
        "throttle_mbit": args.throttle_mbit if args.expect == "compressed" else None,
        "link_rate_mbps": calls[-1]["link_rate_mbps"] if calls else None,
        "calls": len(calls),
        "tensor_bytes": array.nbytes,
        "link_bytes_per_call": [r.get("link_bytes") for r in calls],
        "failures": failures,
    }}), flush=True)
    for f in failures:
        print(f"link guard ({args.label}): {f}", file=sys.stderr)
    return 1 if failures or verdict != args.expect else 0


if __name__ == "__main__":
    sys.exit(main())
