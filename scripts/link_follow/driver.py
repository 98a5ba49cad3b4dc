"""Drives scripts/link-follow.sh's run inside the client namespace.

Three things happen on one timeline (t = 0 when the first call starts):

- a caller sends TF Serving Predict calls through the outbound sidecar, one at a time,
  each carrying the same compressible float32 tensor, and checks every echo bit for bit;
- a poller reads the outbound's /metrics every --poll seconds and keeps
  bloscar_link_rate_bytes_per_second and bloscar_link_samples_total;
- the main thread shapes both veth ends with tc tbf and changes their rate at the
  scheduled times (`tc qdisc change`).

At the end it prints a table of the measured rate against the tbf rate, and for each
rate (the start, then each change) how long the measured rate took to enter, and stay
within, a band around the new tbf rate. Run with the interpreter of .venvs/tfs.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

MAX_MESSAGE = 64 * 1024 * 1024
MBIT = 1e6 / 8


def tensor(megabytes: float) -> np.ndarray:
    """ReLU activations at a coarse precision: half zeros, the rest with short mantissas,
    so Blosc (shuffle + a fast codec) compresses it a few times, as it would real ones."""
    rng = np.random.default_rng(7)
    n = int(megabytes * 1e6) // 4
    x = np.maximum(rng.standard_normal(n, dtype=np.float32), 0)
    return (np.round(x * 64) / 64).astype("<f4").reshape(-1, 1000)


def burst_bytes(mbps: float) -> int:
    """scripts/bench-link.sh's tbf burst: 5 ms at the rate, at least 64 KiB."""
    return max(65536, int(mbps * MBIT * 0.005))


def shape(devices: list, mbps: float, verb: str) -> None:
    for ns, dev in devices:
        subprocess.run(
            ["tc", "-n", ns, "qdisc", verb, "dev", dev, "root", "tbf", "rate", f"{mbps:g}mbit",
             "burst", str(burst_bytes(mbps)), "latency", "20ms"],
            check=True,
        )


class Caller(threading.Thread):
    """One Predict call at a time until stopped; records each call's end and outcome."""

    def __init__(self, target: str, array: np.ndarray, t0: float):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.t0 = t0
        self.calls = []  # (t_end, seconds, ok)
        self.errors = []
        channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = "echo"
        self.request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]),
            tensor_content=array.tobytes(),
        ))
        self.expected = self.request.inputs["x"].SerializeToString(deterministic=True)

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                response = self.stub.Predict(self.request, timeout=30)
                ok = (list(response.outputs) == ["x"]
                      and response.outputs["x"].SerializeToString(deterministic=True) == self.expected)
                if not ok:
                    self.errors.append(f"t={start - self.t0:.1f}s: the echo differs from the request")
            except grpc.RpcError as e:
                ok = False
                self.errors.append(f"t={start - self.t0:.1f}s: {e.code().name}: {e.details()}")
                time.sleep(0.2)
            end = time.monotonic()
            self.calls.append((end - self.t0, end - start, ok))


def scrape(url: str) -> dict:
    """The link gauge (bytes/s) and the sample counters by kind."""
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    out = {"rate": None, "link": 0, "at_least": 0}
    for line in text.splitlines():
        if line.startswith("bloscar_link_rate_bytes_per_second "):
            out["rate"] = float(line.split()[-1])
        elif line.startswith("bloscar_link_samples_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = int(float(line.split()[-1]))
    return out


class Poller(threading.Thread):
    def __init__(self, url: str, every: float, t0: float):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.url, self.every, self.t0 = url, every, t0
        self.polls = []  # (t, measured Mbit/s or None, link samples, at_least samples)

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            t = self.t0 + tick * self.every
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                m = scrape(self.url)
                mbps = m["rate"] / MBIT if m["rate"] else None
                self.polls.append((time.monotonic() - self.t0, mbps, m["link"], m["at_least"]))
            except OSError:
                self.polls.append((time.monotonic() - self.t0, None, None, None))
            tick += 1


def follow_time(polls: list, start: float, end: float, target: float, band: float):
    """Seconds from `start` to the first poll within `band` of `target`, and to the first
    poll after which every poll up to `end` reads within it; None when that never happens."""
    window = [(t, m) for t, m, *_ in polls if start <= t < end]
    first = entered = None
    for t, m in window:
        inside = m is not None and abs(m / target - 1) <= band
        if inside and first is None:
            first = t
        if inside and entered is None:
            entered = t
        elif not inside:
            entered = None
    return (None if first is None else first - start,
            None if entered is None else entered - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True, help="the outbound sidecar's gRPC address")
    p.add_argument("--metrics", required=True, help="the outbound's /metrics URL")
    p.add_argument("--device", action="append", required=True, metavar="NS:DEV",
                   help="a veth end to shape (repeat for both ends)")
    p.add_argument("--rates", required=True, help="tbf rates in Mbit/s, comma-separated")
    p.add_argument("--at", required=True, help="seconds of each rate change, comma-separated")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--poll", type=float, default=0.5)
    p.add_argument("--every", type=float, default=1.0, help="seconds between table rows")
    p.add_argument("--band", type=float, default=0.3)
    p.add_argument("--tensor-mb", type=float, default=4.0)
    p.add_argument("--json-out")
    a = p.parse_args()

    rates = [float(r) for r in a.rates.split(",")]
    changes = [float(t) for t in a.at.split(",")] if a.at else []
    if len(changes) != len(rates) - 1 or changes != sorted(changes) or (changes and changes[-1] >= a.duration):
        p.error("--at needs one increasing time per rate after the first, before --duration")
    devices = [tuple(d.split(":", 1)) for d in a.device]
    array = tensor(a.tensor_mb)

    shape(devices, rates[0], "replace")
    t0 = time.monotonic()
    caller = Caller(a.target, array, t0)
    poller = Poller(a.metrics, a.poll, t0)
    caller.start()
    poller.start()
    phases = [(0.0, rates[0])]
    for at, rate in zip(changes, rates[1:]):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        shape(devices, rate, "change")
        phases.append((time.monotonic() - t0, rate))
        print(f"link-follow: t={phases[-1][0]:.1f}s tbf -> {rate:g} Mbit/s", file=sys.stderr)
    time.sleep(max(0.0, t0 + a.duration - time.monotonic()))
    poller.stop.set()
    caller.stop.set()
    poller.join()
    caller.join(timeout=35)

    def tbf_at(t: float) -> float:
        return [r for s, r in phases if s <= t][-1]

    # The table: one row per --every seconds, from the poll nearest to it.
    print(f"\nLink follow: one {array.nbytes / 1e6:.1f} MB float32 tensor per call, "
          f"one call at a time; /metrics every {a.poll:g} s\n")
    print("| t (s) | tbf (Mbit/s) | measured (Mbit/s) | calls | samples link / at_least |")
    print("|---:|---:|---:|---:|---:|")
    row_t, prev_calls = 0.0, 0
    for t, m, link, at_least in poller.polls:
        if t + 1e-6 < row_t:
            continue
        calls = sum(1 for c in caller.calls if c[0] <= t)
        measured = "-" if m is None else f"{m:.0f}"
        samples = "-" if link is None else f"{link} / {at_least}"
        print(f"| {t:.1f} | {tbf_at(t):g} | {measured} | {calls - prev_calls} | {samples} |")
        prev_calls = calls
        row_t += a.every

    print(f"\n| from t (s) | tbf (Mbit/s) | first within ±{a.band:.0%} after "
          f"| within ±{a.band:.0%} to the end of the phase after |")
    print("|---:|---:|---|---|")
    follows = []
    for i, (start, rate) in enumerate(phases):
        end = phases[i + 1][0] if i + 1 < len(phases) else a.duration
        first, ft = follow_time(poller.polls, start, end, rate, a.band)
        follows.append({"from": start, "tbf_mbps": rate, "first_secs": first, "follow_secs": ft})
        print(f"| {start:.1f} | {rate:g} | {'never' if first is None else f'{first:.1f} s'} "
              f"| {'not followed' if ft is None else f'{ft:.1f} s'} |")

    ok_calls = sum(1 for c in caller.calls if c[2])
    print(f"\ncalls: {len(caller.calls)}, echoed bit for bit: {ok_calls}, failed: {len(caller.errors)}")
    for e in caller.errors[:10]:
        print(f"  {e}", file=sys.stderr)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"phases": follows, "band": a.band, "tensor_bytes": array.nbytes,
                       "polls": poller.polls, "calls": caller.calls, "errors": caller.errors}, f)
    return 1 if caller.errors or not caller.calls else 0


if __name__ == "__main__":
    sys.exit(main())
