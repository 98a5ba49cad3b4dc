"""Two tritonclient ModelInfer calls of model echo:1 through an outbound sidecar, each
checked bit-exact. Usage: client.py HOST:PORT"""
import sys

import numpy as np
import tritonclient.grpc as tc

client = tc.InferenceServerClient(sys.argv[1])
data = np.sin(np.arange(256 * 1024, dtype=np.float32) * 0.001).reshape(1, -1)
for i in range(2):
    tensor = tc.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("echo", [tensor], model_version="1", request_id=f"req-{i}")
    assert np.array_equal(result.as_numpy("OUTPUT0"), data), "a tensor changed on the way"
    print(f"call {i}: {data.nbytes} bytes echoed bit-exact", file=sys.stderr)
