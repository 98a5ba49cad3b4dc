"""End-to-end cases over HTTP (KServe v2 REST) against Triton's HTTP endpoint.

Two clients: the real Triton client (tritonclient[http]), with tensors as binary data
(the binary tensor extension) or as JSON, each with and without the client's own request
and response compression; and a plain HTTP client (requests) that writes the binary
extension by hand: the JSON header, Inference-Header-Content-Length
and the raw tensor bytes, and reads the response's the same way. Every case checks that
the identity models returned the tensors bit for bit and prints one JSON line with the
bytes the relay (tests/e2e/relay.py) counted. Run with the interpreter of .venvs/pytriton.
"""

import argparse
import json
import sys
import traceback

import numpy as np
import requests
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor, triton_to_np_dtype

import tensors
from relay_counters import Meter

COMPRESSIONS = (None, "gzip", "deflate")


def json_safe(array: np.ndarray) -> np.ndarray:
    """JSON has no NaN or infinities: the JSON cases send finite values only."""
    if array.dtype.kind == "f":
        array = array.copy()
        array[~np.isfinite(array)] = 0
    return array


def infer(client, model: str, arrays: dict, expected: dict, binary: bool, request_compression,
          response_compression) -> bool:
    inputs = []
    for name, array in arrays.items():
        inp = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inp.set_data_from_numpy(array, binary_data=binary)
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in expected]
    result = client.infer(model, inputs, outputs=outputs, request_compression_algorithm=request_compression,
                          response_compression_algorithm=response_compression)
    return all(same(arr, result.as_numpy(out)) for out, arr in expected.items())


def same(want: np.ndarray, got: np.ndarray) -> bool:
    """Bit-for-bit equality; BYTES elements that came back as JSON strings are compared
    by their UTF-8 bytes."""
    if want.dtype == np.object_ and got is not None and got.dtype == np.object_:
        return want.shape == got.shape and [bytes(x) for x in want.ravel()] == [
            x.encode() if isinstance(x, str) else bytes(x) for x in got.ravel()]
    return tensors.same(want, got)


def raw_bytes(array: np.ndarray) -> bytes:
    """A tensor's bytes in the binary extension: BYTES elements each with a 4-byte
    little-endian length."""
    if array.dtype == np.object_:
        serialized = serialize_byte_tensor(array)
        return serialized.item() if serialized.dtype == np.object_ else serialized.tobytes()
    return array.tobytes()


def raw_infer(session: requests.Session, base: str, model: str, arrays: dict, expected: dict) -> bool:
    """The binary extension written and read by hand."""
    header = {
        "inputs": [
            {"name": name, "shape": list(a.shape), "datatype": np_to_triton_dtype(a.dtype),
             "parameters": {"binary_data_size": len(raw_bytes(a))}}
            for name, a in arrays.items()
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in expected],
    }
    head = json.dumps(header).encode()
    body = head + b"".join(raw_bytes(a) for a in arrays.values())
    # identity: the body is read as it crossed, so its headers can be checked against it.
    response = session.post(f"{base}/v2/models/{model}/infer", data=body, timeout=60, headers={
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
        "Accept-Encoding": "identity",
    })
    data = response.content
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {data[:200]!r}")
    if response.headers.get("Content-Encoding") or int(response.headers["Content-Length"]) != len(data):
        raise RuntimeError("the response's headers do not describe its body")
    header_len = int(response.headers["Inference-Header-Content-Length"])
    answer = json.loads(data[:header_len])
    offset = header_len
    ok = True
    for output in answer["outputs"]:
        size = output["parameters"]["binary_data_size"]
        chunk = data[offset:offset + size]
        offset += size
        want = expected[output["name"]]
        if output["datatype"] == "BYTES":
            ok = ok and chunk == raw_bytes(want)
        else:
            got = np.frombuffer(chunk, dtype=triton_to_np_dtype(output["datatype"])).reshape(output["shape"])
            ok = ok and tensors.same(want, got)
    return ok and offset == len(data) and {o["name"] for o in answer["outputs"]} == set(expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="host:port the client connects to")
    parser.add_argument("--relay-control", type=int, required=True)
    parser.add_argument("--app-route", required=True)
    parser.add_argument("--link-route", required=True)
    parser.add_argument("--server-route", help="relay route between the inbound sidecar and the server")
    parser.add_argument("--response-compression", default="none", help="unused: the client picks per case")
    parser.add_argument("--warmup", type=int, default=1, help="calls before measuring")
    args = parser.parse_args()

    client = httpclient.InferenceServerClient(url=args.url)
    session = requests.Session()
    base = f"http://{args.url}"
    rng = np.random.default_rng(7)
    all_cases = list(tensors.triton_cases(rng))

    # Lets the outbound sidecar learn from a response that its peer reads bloscar.
    for _ in range(args.warmup):
        label, model, arrays, expected = all_cases[0]
        infer(client, model, arrays, expected, True, None, None)

    failures = 0

    def run(record: dict, call) -> None:
        nonlocal failures
        try:
            with Meter(args.relay_control, args.app_route, args.link_route, args.server_route) as meter:
                record["bit_exact"] = call()
            record["app_bytes"] = meter.app_bytes
            record["link_bytes"] = meter.link_bytes
            record["server_bytes"] = meter.server_bytes
        except Exception as exc:  # reported per case; the runner fails the suite
            record["bit_exact"] = False
            record["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        failures += not record["bit_exact"]
        print(json.dumps(record), flush=True)

    for label, model, arrays, expected in all_cases:
        # Triton reads no FP16 from JSON, and its JSON reader does not give every double
        # back exactly (the FP64 JSON cases fail without sidecars too): binary only.
        json_ok = all(a.dtype not in (np.float16, np.float64) for a in arrays.values())
        for binary in (True, False) if json_ok else (True,):
            sent = arrays if binary else {k: json_safe(v) for k, v in arrays.items()}
            want = expected if binary else {k: json_safe(v) for k, v in expected.items()}
            for request_compression in COMPRESSIONS:
                for response_compression in COMPRESSIONS:
                    record = {
                        "suite": "triton-http",
                        "tensor": label,
                        "mode": "binary" if binary else "json",
                        "request_compression": request_compression or "none",
                        "response_compression": response_compression or "none",
                    }
                    run(record, lambda: infer(client, model, sent, want, binary, request_compression,
                                              response_compression))
        record = {"suite": "http-by-hand", "tensor": label, "mode": "binary", "request_compression": "none",
                  "response_compression": "none"}
        run(record, lambda: raw_infer(session, base, model, arrays, expected))
    client.close()
    session.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
