"""A TensorFlow Serving PredictionService that echoes Predict inputs as outputs.

Built with grpcio from the published TF Serving stubs (min-tfs-client), so it speaks the
exact wire protocol of TF Serving. Binds a free 127.0.0.1 port, writes it as JSON to
--ports-file, and serves until SIGTERM/SIGINT. Run with the interpreter of .venvs/tfs.
"""

import argparse
import json
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

MAX_MESSAGE = 64 * 1024 * 1024


class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict answers with the request's inputs as its outputs, tensor for tensor."""

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, tensor in request.inputs.items():
            response.outputs[name].CopyFrom(tensor)
        return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports-file", required=True)
    parser.add_argument("--response-compression", default="none", choices=["none", "gzip", "deflate"])
    args = parser.parse_args()

    compression = {
        "none": grpc.Compression.NoCompression,
        "gzip": grpc.Compression.Gzip,
        "deflate": grpc.Compression.Deflate,
    }[args.response_compression]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        compression=compression,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"grpc": port, "pid": os.getpid()}, f)
    os.replace(tmp, args.ports_file)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
