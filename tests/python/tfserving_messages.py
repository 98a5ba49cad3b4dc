"""Builds TF Serving PredictRequest/PredictResponse messages with the TF Serving stubs of
min-tfs-client (and its own ndarray_to_tensor_proto, which fills the typed *_val
fields), and writes them with the tensor byte ranges bloscar must locate.

Usage: tfserving_messages.py OUT_DIR
"""

import pathlib
import sys

import numpy as np
from min_tfs_client.tensors import ndarray_to_tensor_proto
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from expected_ranges import Case, packed_payload

PREDICT = "/tensorflow.serving.PredictionService/Predict"

rng = np.random.default_rng(20240602)

# numpy dtype -> (DataType, bloscar dtype name, element size)
RAW_TYPES = {
    np.float32: (types_pb2.DT_FLOAT, "float32", 4),
    np.float64: (types_pb2.DT_DOUBLE, "float64", 8),
    np.int32: (types_pb2.DT_INT32, "int32", 4),
    np.uint8: (types_pb2.DT_UINT8, "uint8", 1),
    np.int16: (types_pb2.DT_INT16, "int16", 2),
    np.int8: (types_pb2.DT_INT8, "int8", 1),
    np.int64: (types_pb2.DT_INT64, "int64", 8),
    np.bool_: (types_pb2.DT_BOOL, "bool", 1),
    np.uint16: (types_pb2.DT_UINT16, "uint16", 2),
    np.float16: (types_pb2.DT_HALF, "float16", 2),
    np.uint32: (types_pb2.DT_UINT32, "uint32", 4),
    np.uint64: (types_pb2.DT_UINT64, "uint64", 8),
    np.complex64: (types_pb2.DT_COMPLEX64, "complex64", 4),
    np.complex128: (types_pb2.DT_COMPLEX128, "complex128", 8),
}


def content_proto(array):
    """What tf.make_tensor_proto produces: raw little-endian bytes in tensor_content."""
    dtype, _, _ = RAW_TYPES[array.dtype.type]
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
    )
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=array.tobytes())


def fill(tensors):
    """Adds tensors to the `tensors` map; returns the payloads to expect once the
    message is serialized."""
    pending = []
    raw = [
        ("image", rng.standard_normal((1, 8, 8, 3)).astype(np.float32)),
        ("ids", rng.integers(-(2**40), 2**40, size=10, dtype=np.int64)),
        ("mask", (rng.random((20, 20)) > 0.5).astype(np.uint8)),
        ("half", rng.standard_normal(9).astype(np.float16)),
        ("u16", rng.integers(0, 2**16, size=13, dtype=np.uint16)),
        ("cplx", (rng.standard_normal(6) + 1j * rng.standard_normal(6)).astype(np.complex64)),
        ("f64", rng.standard_normal(7).astype(np.float64)),
        ("i16", rng.integers(-(2**15), 2**15, size=15, dtype=np.int16)),
    ]
    for name, array in raw:
        tensors[name].CopyFrom(content_proto(array))
        _, dtype, elem_size = RAW_TYPES[array.dtype.type]
        pending.append((array.tobytes(), elem_size, dtype, name))
    # Typed fields, as min-tfs-client's own ndarray_to_tensor_proto writes them.
    floats = rng.standard_normal((4, 5)).astype(np.float32)
    tensors["floats"].CopyFrom(ndarray_to_tensor_proto(floats))
    pending.append((floats.tobytes(), 4, "float32", "floats"))
    doubles = rng.standard_normal(6).astype(np.float64)
    tensors["doubles"].CopyFrom(ndarray_to_tensor_proto(doubles))
    pending.append((doubles.tobytes(), 8, "float64", "doubles"))
    ints = rng.integers(-1000, 1000, size=12, dtype=np.int32)
    tensors["ints"].CopyFrom(ndarray_to_tensor_proto(ints))
    payload = packed_payload(tensor_pb2.TensorProto(int_val=ints.tolist()).SerializeToString())
    pending.append((payload, 1, "int32", "ints"))
    longs = rng.integers(-(2**50), 2**50, size=8, dtype=np.int64)
    tensors["longs"].CopyFrom(ndarray_to_tensor_proto(longs))
    payload = packed_payload(tensor_pb2.TensorProto(int64_val=longs.tolist()).SerializeToString())
    pending.append((payload, 1, "int64", "longs"))
    words = np.array(["quokka", "narwhal", "okapi!"], dtype=np.str_)
    tensors["words"].CopyFrom(ndarray_to_tensor_proto(words))
    for word in words:
        pending.append((word.encode(), 1, "bytes", "words"))
    return pending


def main():
    out_dir = pathlib.Path(sys.argv[1])

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.model_spec.signature_name = "serving_default"
    request.model_spec.version.value = 3
    request.output_filter.append("scores")
    pending = fill(request.inputs)
    case = Case("tfs_request", [PREDICT], "request", request.SerializeToString())
    for payload in pending:
        case.expect(*payload)
    case.write(out_dir)

    response = predict_pb2.PredictResponse()
    response.model_spec.name = "model"
    pending = fill(response.outputs)
    case = Case("tfs_response", [PREDICT], "response", response.SerializeToString())
    for payload in pending:
        case.expect(*payload)
    case.write(out_dir)


if __name__ == "__main__":
    main()
