"""End-to-end cases with the real Triton client (tritonclient[grpc]) against Triton.

Each case sends tensors through whatever stands at --url (the outbound sidecar, or Triton
itself), checks that the identity models returned them bit for bit, and prints one JSON
line: the case, the bytes the apps exchanged and the bytes on the link, as counted by the
relay (tests/e2e/relay.py). Run with the interpreter of .venvs/pytriton.
"""

import argparse
import json
import queue
import sys
import traceback

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

import tensors
from relay_counters import Meter

STREAM_REQUESTS = 3


def make_inputs(arrays: dict) -> list:
    inputs = []
    for name, array in arrays.items():
        inp = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inp.set_data_from_numpy(array)
        inputs.append(inp)
    return inputs


def check(result, expected: dict) -> bool:
    return all(tensors.same(arr, result.as_numpy(out)) for out, arr in expected.items())


def unary(client, model: str, arrays: dict, expected: dict, compression) -> bool:
    outputs = [grpcclient.InferRequestedOutput(name) for name in expected]
    result = client.infer(model, make_inputs(arrays), outputs=outputs, compression_algorithm=compression)
    return check(result, expected)


def stream(client, model: str, arrays: dict, expected: dict, compression) -> bool:
    results: "queue.Queue" = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)), compression_algorithm=compression)
    try:
        outputs = [grpcclient.InferRequestedOutput(name) for name in expected]
        for i in range(STREAM_REQUESTS):
            client.async_stream_infer(model, make_inputs(arrays), outputs=outputs, request_id=str(i))
        ok = True
        seen = set()
        for _ in range(STREAM_REQUESTS):
            result, error = results.get(timeout=60)
            if error is not None:
                raise error
            seen.add(result.get_response().id)
            ok = ok and check(result, expected)
        return ok and seen == {str(i) for i in range(STREAM_REQUESTS)}
    finally:
        client.stop_stream()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="host:port the client connects to")
    parser.add_argument("--relay-control", type=int, required=True)
    parser.add_argument("--app-route", required=True)
    parser.add_argument("--link-route", required=True)
    parser.add_argument("--server-route", help="relay route between the inbound sidecar and the server")
    parser.add_argument("--response-compression", default="none", help="label for the report")
    parser.add_argument("--warmup", type=int, default=1, help="calls before measuring")
    args = parser.parse_args()

    client = grpcclient.InferenceServerClient(url=args.url)
    rng = np.random.default_rng(7)
    all_cases = list(tensors.triton_cases(rng))

    # Lets the outbound sidecar learn from a response that its peer reads bloscar.
    for _ in range(args.warmup):
        label, model, arrays, expected = all_cases[0]
        unary(client, model, arrays, expected, None)

    failures = 0
    for label, model, arrays, expected in all_cases:
        for mode, call in (("unary", unary), ("stream", stream)):
            for compression in (None, "gzip", "deflate"):
                record = {
                    "suite": "triton",
                    "tensor": label,
                    "mode": mode,
                    "request_compression": compression or "none",
                    "response_compression": args.response_compression,
                }
                try:
                    with Meter(args.relay_control, args.app_route, args.link_route, args.server_route) as meter:
                        record["bit_exact"] = call(client, model, arrays, expected, compression)
                    record["app_bytes"] = meter.app_bytes
                    record["link_bytes"] = meter.link_bytes
                    record["server_bytes"] = meter.server_bytes
                except Exception as exc:  # reported per case; the runner fails the suite
                    record["bit_exact"] = False
                    record["error"] = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc(file=sys.stderr)
                failures += not record["bit_exact"]
                print(json.dumps(record), flush=True)
    client.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
