"""A real Triton Inference Server (nvidia-pytriton, CPU) with one echo model per benchmark
tensor: model NAME takes input NAME (its dtype, any shape of its rank) and returns it
unchanged as NAME_echo, so the client can check every answer bit for bit.

Serves gRPC on --grpc-address:--grpc-port, KServe v2 HTTP/REST on --http-address
(default 127.0.0.1) at the port after it, metrics on 127.0.0.1 at the next; writes {"pid": ...} to --ready-file once the models are loaded, and serves
until SIGTERM/SIGINT. --response-compression sets Triton's
grpc_infer_response_compression_level, the only response compression setting Triton has
(gRPC core turns the level into an algorithm among those the client accepts; tritonclient
accepts gzip and deflate).

Run with the interpreter of .venvs/pytriton.
"""

import argparse
import json
import logging
import os
import signal
import sys

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def echo(name: str):
    """The identity model of tensor NAME: what comes in goes back out."""
    def infer(requests):
        return [{f"{name}_echo": request[name]} for request in requests]

    return infer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", required=True, help="manifest.json written by tensors.py")
    parser.add_argument("--grpc-address", default="0.0.0.0")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-address", default="127.0.0.1",
                        help="the HTTP/REST listener's address (its port: --grpc-port + 1)")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--response-compression", default="none", choices=["none", "low", "medium", "high"])
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    with open(args.manifest) as f:
        manifest = json.load(f)
    config = TritonConfig(
        grpc_address=args.grpc_address,
        grpc_port=args.grpc_port,
        http_address=args.http_address,
        http_port=args.grpc_port + 1,
        metrics_address="127.0.0.1",
        metrics_port=args.grpc_port + 2,
        grpc_infer_response_compression_level=args.response_compression,
        log_verbose=0,
    )
    # Batching off: the client sends whole tensors of any shape of the right rank.
    model_config = ModelConfig(batching=False)
    with Triton(config=config) as triton:
        for name, spec in manifest.items():
            dims = (-1,) * len(spec["shape"])
            dtype = np.dtype(spec["dtype"]).type
            triton.bind(
                model_name=name,
                infer_func=echo(name),
                inputs=[Tensor(name=name, dtype=dtype, shape=dims)],
                outputs=[Tensor(name=f"{name}_echo", dtype=dtype, shape=dims)],
                config=model_config,
                strict=False,
            )
        triton.run()
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "grpc_port": args.grpc_port}, f)
        os.replace(tmp, args.ready_file)

        stopping = {"now": False}

        def on_signal(signum, frame):
            stopping["now"] = True
            triton.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            triton.serve()
        except Exception:
            if not stopping["now"]:
                raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
