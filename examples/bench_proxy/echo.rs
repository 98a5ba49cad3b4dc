//! The tonic KServe v2 echo server behind every path of the latency and throughput cases.

use std::net::SocketAddr;

use bloscar::pb::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use futures_util::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::tensors::echo;

/// Largest message the echo server and the benchmark's tonic clients accept.
pub const MAX_MESSAGE: usize = 64 << 20;

type ResponseStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>,
>;

/// Answers each request with its own tensors as outputs.
struct Echo;

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        Ok(Response::new(echo(request.into_inner())))
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let stream = request.into_inner().map(|request| {
            request.map(|request| ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(echo(request)),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Starts the echo server on a free loopback port of this process's runtime.
pub async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    let addr = listener.local_addr().expect("echo server address");
    tokio::spawn(
        tonic::transport::Server::builder().serve_with_incoming(
            GrpcInferenceServiceServer::new(Echo)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            // Like the sidecars (and most gRPC servers), no Nagle delay on small writes.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        ),
    );
    addr
}
