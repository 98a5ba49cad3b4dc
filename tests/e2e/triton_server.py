"""A real Triton Inference Server (nvidia-pytriton, CPU) serving identity models.

Every model returns its inputs unchanged, so a client can check bit for bit what crossed
the sidecars. Binds only to 127.0.0.1 on free ports, writes them as JSON to --ports-file
once the models are loaded, and serves until SIGTERM/SIGINT.

Run with the interpreter of .venvs/pytriton.
"""

import argparse
import json
import logging
import os
import signal
import socket
import sys

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

# Model name -> numpy dtype of its single input/output. BYTES travels as object arrays.
SINGLE_INPUT_MODELS = {
    "identity_fp32": np.float32,
    "identity_fp16": np.float16,
    "identity_uint8": np.uint8,
    "identity_bool": np.bool_,
    "identity_int64": np.int64,
    "identity_fp64": np.float64,
    "identity_int8": np.int8,
    "identity_int16": np.int16,
    "identity_int32": np.int32,
    "identity_uint16": np.uint16,
    "identity_uint32": np.uint32,
    "identity_uint64": np.uint64,
    "identity_bytes": np.bytes_,
}

# The multi-input model: several tensors of different types in one request.
MULTI_INPUTS = {
    "image": np.float32,
    "mask": np.uint8,
    "ids": np.int64,
    "labels": np.bytes_,
}


def free_port() -> int:
    """A port the kernel considers free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def identity(requests):
    """Returns every input as the output of the same name with suffix _out."""
    return [{f"{name}_out": value for name, value in request.items()} for request in requests]


def identity_single(requests):
    """Returns INPUT as OUTPUT."""
    return [{"OUTPUT": request["INPUT"]} for request in requests]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports-file", required=True)
    parser.add_argument(
        "--response-compression",
        default="none",
        choices=["none", "low", "medium", "high"],
        help="Triton's grpc_infer_response_compression_level",
    )
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        http_address="127.0.0.1",
        http_port=http_port,
        metrics_address="127.0.0.1",
        metrics_port=metrics_port,
        grpc_infer_response_compression_level=args.response_compression,
        log_verbose=0,
    )
    # Shapes are free (-1) and batching is off: the client sends any shape it likes.
    model_config = ModelConfig(batching=False)
    with Triton(config=config) as triton:
        for name, dtype in SINGLE_INPUT_MODELS.items():
            triton.bind(
                model_name=name,
                infer_func=identity_single,
                inputs=[Tensor(name="INPUT", dtype=dtype, shape=(-1,))],
                outputs=[Tensor(name="OUTPUT", dtype=dtype, shape=(-1,))],
                config=model_config,
                strict=False,
            )
        triton.bind(
            model_name="identity_multi",
            infer_func=identity,
            inputs=[Tensor(name=n, dtype=d, shape=(-1,)) for n, d in MULTI_INPUTS.items()],
            outputs=[Tensor(name=f"{n}_out", dtype=d, shape=(-1,)) for n, d in MULTI_INPUTS.items()],
            config=model_config,
            strict=False,
        )
        triton.run()
        tmp = args.ports_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"grpc": grpc_port, "http": http_port, "metrics": metrics_port, "pid": os.getpid()}, f)
        os.replace(tmp, args.ports_file)

        stop = {"now": False}

        def on_signal(signum, frame):
            stop["now"] = True
            triton.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            triton.serve()
        except Exception:
            if not stop["now"]:
                raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
