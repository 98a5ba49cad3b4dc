"""A KServe v2 gRPC model for scripts/log-excerpt.sh: ModelInfer answers with its
inputs as outputs (INPUTn -> OUTPUTn). Usage: echo_server.py HOST:PORT"""
import sys
from concurrent import futures

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg


class Echo(pbg.GRPCInferenceServiceServicer):
    def ModelInfer(self, request, context):
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        for tensor in request.inputs:
            response.outputs.add(
                name=tensor.name.replace("INPUT", "OUTPUT"), datatype=tensor.datatype, shape=tensor.shape
            )
        response.raw_output_contents.extend(request.raw_input_contents)
        return response


limits = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
server = grpc.server(futures.ThreadPoolExecutor(4), options=limits)
pbg.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
server.add_insecure_port(sys.argv[1])
server.start()
server.wait_for_termination()
