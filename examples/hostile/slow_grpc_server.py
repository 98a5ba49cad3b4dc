"""A grpcio (grpc-core) server for the hostile-traffic suite's long call.

/hostile.Slow/Wait sleeps for the seconds in the call's `x-sleep-secs` metadata, then
answers with the request's own bytes. The server keeps grpc-core's defaults, among them
its policing of HTTP/2 pings: a client that pings more often than every 5 minutes while
no data flows gets GOAWAY `too_many_pings`. Prints its port on stdout once it serves.
Started by examples/hostile (long_call.rs).
"""

import time
from concurrent import futures

import grpc


def wait(request, context):
    metadata = dict(context.invocation_metadata())
    time.sleep(float(metadata.get("x-sleep-secs", "0")))
    return request


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "hostile.Slow", {"Wait": grpc.unary_unary_rpc_method_handler(wait)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
