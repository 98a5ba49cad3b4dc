"""End-to-end cases with a TF Serving Predict client (min-tfs-client stubs).

Sends PredictRequests through whatever stands at --url (the outbound sidecar, or the echo
server itself), checks that every output TensorProto equals its input bit for bit, and
prints one JSON line per case (see triton_cases.py). Run with the interpreter of .venvs/tfs.
"""

import argparse
import json
import sys
import traceback

import grpc
import numpy as np
from min_tfs_client.requests import TensorServingClient
from min_tfs_client.tensors import tensor_proto_to_ndarray
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import tensors
from relay_counters import Meter

MAX_MESSAGE = 64 * 1024 * 1024
DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.uint8): types_pb2.DT_UINT8,
          np.dtype(np.float16): types_pb2.DT_HALF, np.dtype(np.int64): types_pb2.DT_INT64,
          np.dtype(np.bool_): types_pb2.DT_BOOL}


def tensor_content(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto with raw little-endian `tensor_content`, as tf.make_tensor_proto builds it."""
    return tensor_pb2.TensorProto(
        dtype=DTYPES[array.dtype],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        ),
        tensor_content=array.astype(array.dtype.newbyteorder("<")).tobytes(),
    )


def echoed(request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse) -> bool:
    """Every output serialises to exactly the bytes of the input of the same name."""
    if set(request.inputs) != set(response.outputs):
        return False
    return all(
        request.inputs[k].SerializeToString(deterministic=True)
        == response.outputs[k].SerializeToString(deterministic=True)
        for k in request.inputs
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--relay-control", type=int, required=True)
    parser.add_argument("--app-route", required=True)
    parser.add_argument("--link-route", required=True)
    parser.add_argument("--server-route", help="relay route between the inbound sidecar and the server")
    parser.add_argument("--response-compression", default="none", help="label for the report")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    rng = np.random.default_rng(11)
    channel = grpc.insecure_channel(
        args.url,
        options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
    )
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def raw_request(arrays: dict) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "echo"
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(tensor_content(array))
        return request

    fp32, uint8, fp16 = tensors.fp32(rng), tensors.uint8(rng), tensors.fp16(rng)
    raw_cases = {
        "FP32 tensor_content": {"x": fp32},
        "FP16 tensor_content": {"x": fp16},
        "UINT8 tensor_content": {"x": uint8},
        "MULTI tensor_content": {"image": fp32, "frames": uint8, "mask": tensors.boolean(rng)},
    }
    compressions = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip,
                    "deflate": grpc.Compression.Deflate}

    for _ in range(args.warmup):
        stub.Predict(raw_request(raw_cases["FP32 tensor_content"]), timeout=60)

    failures = 0

    def run(label: str, request_compression: str, call) -> None:
        nonlocal failures
        record = {"suite": "tfserving", "tensor": label, "mode": "unary",
                  "request_compression": request_compression,
                  "response_compression": args.response_compression}
        try:
            with Meter(args.relay_control, args.app_route, args.link_route, args.server_route) as meter:
                record["bit_exact"] = call()
            record["app_bytes"] = meter.app_bytes
            record["link_bytes"] = meter.link_bytes
            record["server_bytes"] = meter.server_bytes
        except Exception as exc:
            record["bit_exact"] = False
            record["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        failures += not record["bit_exact"]
        print(json.dumps(record), flush=True)

    for label, arrays in raw_cases.items():
        request = raw_request(arrays)
        for cname, compression in compressions.items():
            run(label, cname, lambda: echoed(request, stub.Predict(request, timeout=60, compression=compression)))

    # The published client itself: it fills the typed fields (float_val, int64_val, ...).
    host, port = args.url.rsplit(":", 1)
    client = TensorServingClient(host, int(port))
    typed = {"FP32 float_val": fp32[fp32 == fp32][:16384], "INT64 int64_val": tensors.int64(rng)}
    for label, array in typed.items():
        def call(array=array):
            response = client.predict_request("echo", {"x": array})
            out = tensor_proto_to_ndarray(response.outputs["x"])
            return tensors.same(array.astype(out.dtype), out) and out.dtype == array.dtype
        run(label, "none", call)

    channel.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
