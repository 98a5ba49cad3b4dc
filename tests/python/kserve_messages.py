"""Builds KServe v2 messages with tritonclient's own request builder and generated
protobuf classes, and writes them with the tensor byte ranges bloscar must locate.

Usage: kserve_messages.py OUT_DIR
"""

import pathlib
import sys

import ml_dtypes
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import serialize_byte_tensor

from expected_ranges import Case, packed_payload

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"

# KServe datatype -> (bloscar dtype name, element size of raw data)
DATATYPES = {
    "BOOL": ("bool", 1),
    "UINT8": ("uint8", 1),
    "UINT16": ("uint16", 2),
    "UINT32": ("uint32", 4),
    "UINT64": ("uint64", 8),
    "INT8": ("int8", 1),
    "INT16": ("int16", 2),
    "INT32": ("int32", 4),
    "INT64": ("int64", 8),
    "FP16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "FP32": ("float32", 4),
    "FP64": ("float64", 8),
    "BYTES": ("bytes", 1),
}

rng = np.random.default_rng(20240601)


def arrays():
    """One array per KServe datatype, random content."""
    yield "image", rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    yield "mask", (rng.random((64, 64)) > 0.7).astype(np.uint8)
    yield "flags", rng.random(37) > 0.5
    yield "ids", rng.integers(-(2**40), 2**40, size=(5, 7), dtype=np.int64)
    yield "u16", rng.integers(0, 2**16, size=33, dtype=np.uint16)
    yield "u32", rng.integers(0, 2**32, size=9, dtype=np.uint32)
    yield "u64", rng.integers(0, 2**63, size=11, dtype=np.uint64)
    yield "i8", rng.integers(-128, 128, size=50, dtype=np.int8)
    yield "i16", rng.integers(-(2**15), 2**15, size=21, dtype=np.int16)
    yield "i32", rng.integers(-(2**31), 2**31, size=(3, 4), dtype=np.int32)
    yield "half", rng.standard_normal(40).astype(np.float16)
    yield "brain", rng.standard_normal(24).astype(ml_dtypes.bfloat16)
    yield "f64", rng.standard_normal((4, 4)).astype(np.float64)
    yield "text", np.array([b"alpha-%d" % i for i in range(6)] + [b"\x00\xffbin"], dtype=np.object_)
    yield "empty", np.zeros((0, 3), dtype=np.float32)


def request_case():
    inputs = []
    raw_tensors = []
    for name, array in arrays():
        datatype = grpcclient.np_to_triton_dtype(array.dtype)
        infer_input = grpcclient.InferInput(name, list(array.shape), datatype)
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
        raw_tensors.append((name, datatype, array))
    # An input in shared memory: no raw entry, and the raw entries after it shift.
    in_shm = grpcclient.InferInput("in_shm", [4, 4], "FP32")
    in_shm.set_shared_memory("region0", 64)
    inputs.insert(3, in_shm)
    outputs = [grpcclient.InferRequestedOutput("out")]
    request = _get_inference_request(
        model_name="model",
        inputs=inputs,
        model_version="",
        request_id="r-1",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    )
    # Inputs with typed contents (built with the generated classes; the numpy client
    # only sends raw data): no raw entry either.
    typed_fp32 = rng.standard_normal(30).astype(np.float32)
    typed_i32 = rng.integers(-(2**31), 2**31, size=25, dtype=np.int32)
    typed_bytes = [b"typed-one", b"typed-two-longer"]
    t = request.inputs.add(name="typed_f32", datatype="FP32", shape=[30])
    t.contents.fp32_contents.extend(typed_fp32.tolist())
    t = request.inputs.add(name="typed_i32", datatype="INT32", shape=[25])
    t.contents.int_contents.extend(typed_i32.tolist())
    t = request.inputs.add(name="typed_bytes", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend(typed_bytes)
    # And raw inputs after them, to show the matching skips typed inputs.
    late = rng.standard_normal(17).astype(np.float64)
    request.inputs.add(name="late", datatype="FP64", shape=[17])
    request.raw_input_contents.append(late.tobytes())
    raw_tensors.append(("late", "FP64", late))

    message = request.SerializeToString()
    case = Case("kserve_request", [INFER, STREAM], "request", message)
    for name, datatype, array in raw_tensors:
        dtype, elem_size = DATATYPES[datatype]
        data = serialize_byte_tensor(array).item() if datatype == "BYTES" else array.tobytes()
        case.expect(data, elem_size, dtype, name)
    contents = service_pb2.InferTensorContents
    case.expect(typed_fp32.tobytes(), 4, "float32", "typed_f32")
    packed = packed_payload(contents(int_contents=typed_i32.tolist()).SerializeToString())
    case.expect(packed, 1, "int32", "typed_i32")
    for element in typed_bytes:
        case.expect(element, 1, "bytes", "typed_bytes")
    return case


def response():
    """Raw outputs, one output with typed contents and one in shared memory; raw entries
    match outputs by position (tritonclient's rule), so those two have empty entries."""
    resp = service_pb2.ModelInferResponse(model_name="model", model_version="1", id="r-1")
    expected = []
    tensors = [
        ("probs", "FP32", rng.random((1, 1000)).astype(np.float32)),
        ("labels", "INT64", rng.integers(0, 1000, size=5, dtype=np.int64)),
        ("seg", "UINT8", rng.integers(0, 4, size=(32, 32), dtype=np.uint8)),
        ("score16", "FP16", rng.random(8).astype(np.float16)),
        ("names", "BYTES", np.array([b"cat", b"dog", b"axolotl"], dtype=np.object_)),
    ]
    for name, datatype, array in tensors:
        resp.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        data = serialize_byte_tensor(array).item() if datatype == "BYTES" else array.tobytes()
        resp.raw_output_contents.append(data)
        dtype, elem_size = DATATYPES[datatype]
        expected.append((data, elem_size, dtype, name))
    typed = rng.standard_normal(12).astype(np.float64)
    out = resp.outputs.add(name="typed_f64", datatype="FP64", shape=[12])
    out.contents.fp64_contents.extend(typed.tolist())
    resp.raw_output_contents.append(b"")
    expected.append((typed.tobytes(), 8, "float64", "typed_f64"))
    out = resp.outputs.add(name="in_shm", datatype="FP32", shape=[4])
    out.parameters["shared_memory_region"].string_param = "out_region"
    resp.raw_output_contents.append(b"")
    tail = rng.random(20).astype(np.float32)
    resp.outputs.add(name="tail", datatype="FP32", shape=[20])
    resp.raw_output_contents.append(tail.tobytes())
    expected.append((tail.tobytes(), 4, "float32", "tail"))
    return resp, expected


def main():
    out_dir = pathlib.Path(sys.argv[1])
    request_case().write(out_dir)
    resp, expected = response()
    case = Case("kserve_response", [INFER], "response", resp.SerializeToString())
    for payload in expected:
        case.expect(*payload)
    case.write(out_dir)
    stream = service_pb2.ModelStreamInferResponse(infer_response=resp)
    case = Case("kserve_stream_response", [STREAM], "response", stream.SerializeToString())
    for payload in expected:
        case.expect(*payload)
    case.write(out_dir)


if __name__ == "__main__":
    main()
