//! A real tonic server for the tests. It answers the KServe, TF Serving and example
//! imaging methods by echoing the tensors back, records every request message and header
//! exactly as received, and obeys a few `x-*` metadata keys:
//!
//! - `x-fail-code` / `x-fail-message`: end the call with this status (for streams, after
//!   the responses, with `x-trailer: done` in the trailers);
//! - `x-sleep-ms`: wait before answering (deadlines, cancellation);
//! - `x-mode` on `ModelStreamInfer`: `bidi` (default), `client` (answer once after the
//!   whole request stream) or `server` (answer one request with `x-count` responses,
//!   `x-interval-ms` apart; with `x-stall-after: n`, hang after the n-th response);
//! - `x-echo`: copied into the response headers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bloscar::pb::example::imaging::v1::{DenoiseRequest, DenoiseResponse};
use bloscar::pb::inference::{
    ModelInferRequest, ModelInferResponse, ModelStreamInferResponse, model_infer_response,
};
use bloscar::pb::tensorflow::serving::{PredictRequest, PredictResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use prost::Message;
use tokio::net::TcpListener;
use tonic::body::Body as TonicBody;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::Grpc;
use tonic::{Code, Request, Response, Status, Streaming};

use super::raw::RawCodec;

pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
pub const MODEL_STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";
pub const PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";
pub const DENOISE: &str = "/example.imaging.v1.Imaging/Denoise";
/// A method no locator knows: its messages always pass untouched.
pub const PLAIN_ECHO: &str = "/bloscar.test.Plain/Echo";

/// What the server saw.
#[derive(Default)]
pub struct Recorder {
    /// Every request message, exactly as the server's gRPC stack delivered it.
    pub requests: Mutex<Vec<Bytes>>,
    /// Every response message the server sent.
    pub responses: Mutex<Vec<Bytes>>,
    /// The HTTP headers of every call.
    pub headers: Mutex<Vec<HeaderMap>>,
    /// Calls whose handler was dropped before it finished (client cancelled).
    pub cancelled: AtomicUsize,
    /// Calls whose handler finished.
    pub completed: AtomicUsize,
}

impl Recorder {
    pub fn requests(&self) -> Vec<Bytes> {
        self.requests.lock().unwrap().clone()
    }
    pub fn responses(&self) -> Vec<Bytes> {
        self.responses.lock().unwrap().clone()
    }
    pub fn last_headers(&self) -> HeaderMap {
        self.headers
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no call seen")
    }
}

/// Counts a handler as cancelled when dropped before `finish`.
struct Watch {
    recorder: Arc<Recorder>,
    finished: bool,
}

impl Watch {
    fn finish(mut self) {
        self.finished = true;
        self.recorder.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            self.recorder.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The echo of a KServe request: outputs named and shaped like the inputs, raw contents
/// copied.
pub fn kserve_echo(request: &ModelInferRequest) -> ModelInferResponse {
    ModelInferResponse {
        model_name: request.model_name.clone(),
        model_version: request.model_version.clone(),
        id: request.id.clone(),
        parameters: Default::default(),
        outputs: request
            .inputs
            .iter()
            .map(|input| model_infer_response::InferOutputTensor {
                name: format!("{}_out", input.name),
                datatype: input.datatype.clone(),
                shape: input.shape.clone(),
                parameters: Default::default(),
                contents: None,
            })
            .collect(),
        raw_output_contents: request.raw_input_contents.clone(),
    }
}

fn answer(path: &str, request: &Bytes) -> Result<Bytes, Status> {
    let bad = |e: prost::DecodeError| Status::invalid_argument(format!("bad message: {e}"));
    let out = match path {
        MODEL_INFER => {
            kserve_echo(&ModelInferRequest::decode(request.clone()).map_err(bad)?).encode_to_vec()
        }
        MODEL_STREAM_INFER => ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(kserve_echo(
                &ModelInferRequest::decode(request.clone()).map_err(bad)?,
            )),
        }
        .encode_to_vec(),
        PREDICT => {
            let request = PredictRequest::decode(request.clone()).map_err(bad)?;
            PredictResponse {
                outputs: request.inputs,
                model_spec: request.model_spec,
            }
            .encode_to_vec()
        }
        DENOISE => {
            let request = DenoiseRequest::decode(request.clone()).map_err(bad)?;
            DenoiseResponse {
                request_id: request.request_id,
                image: request.image,
                scores: vec![0.5; 4],
            }
            .encode_to_vec()
        }
        _ => return Ok(request.clone()),
    };
    Ok(Bytes::from(out))
}

fn meta(metadata: &MetadataMap, key: &str) -> Option<String> {
    metadata
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn requested_failure(metadata: &MetadataMap) -> Option<Status> {
    let code: i32 = meta(metadata, "x-fail-code")?.parse().ok()?;
    let message = meta(metadata, "x-fail-message").unwrap_or_default();
    let mut trailers = MetadataMap::new();
    trailers.insert("x-trailer", MetadataValue::from_static("done"));
    Some(Status::with_metadata(
        Code::from_i32(code),
        message,
        trailers,
    ))
}

async fn pause(metadata: &MetadataMap) {
    if let Some(ms) = meta(metadata, "x-sleep-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn with_echo<T>(metadata: &MetadataMap, message: T) -> Response<T> {
    let mut response = Response::new(message);
    if let Some(echo) = metadata.get("x-echo") {
        response.metadata_mut().insert("x-echo", echo.clone());
    }
    response
}

/// The test service (generic over the request body so it runs behind a layer too).
#[derive(Clone, Default)]
pub struct EchoService {
    pub recorder: Arc<Recorder>,
    /// Answer with gzip-compressed messages when the client accepts gzip (as Triton does
    /// with response compression on).
    pub gzip_responses: bool,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for EchoService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<TonicBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let recorder = Arc::clone(&self.recorder);
        let gzip_responses = self.gzip_responses;
        recorder
            .headers
            .lock()
            .unwrap()
            .push(request.headers().clone());
        let path = request.uri().path().to_owned();
        let mode = request
            .headers()
            .get("x-mode")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("bidi")
            .to_owned();
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20)
                .accept_compressed(CompressionEncoding::Gzip);
            if gzip_responses {
                grpc = grpc.send_compressed(CompressionEncoding::Gzip);
            }
            let response = match (path.as_str(), mode.as_str()) {
                (MODEL_STREAM_INFER, "client") => {
                    grpc.client_streaming(ClientStream { recorder, path }, request)
                        .await
                }
                (MODEL_STREAM_INFER, "server") => {
                    grpc.server_streaming(ServerStream { recorder, path }, request)
                        .await
                }
                (MODEL_STREAM_INFER, _) => grpc.streaming(Bidi { recorder, path }, request).await,
                _ => grpc.unary(Unary { recorder, path }, request).await,
            };
            Ok(response)
        })
    }
}

#[derive(Clone)]
struct Unary {
    recorder: Arc<Recorder>,
    path: String,
}

impl tower::Service<Request<Bytes>> for Unary {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let recorder = Arc::clone(&self.recorder);
        let path = self.path.clone();
        Box::pin(async move {
            let watch = Watch {
                recorder: Arc::clone(&recorder),
                finished: false,
            };
            let metadata = request.metadata().clone();
            let message = request.into_inner();
            recorder.requests.lock().unwrap().push(message.clone());
            pause(&metadata).await;
            watch.finish();
            if let Some(status) = requested_failure(&metadata) {
                return Err(status);
            }
            let out = answer(&path, &message)?;
            recorder.responses.lock().unwrap().push(out.clone());
            Ok(with_echo(&metadata, out))
        })
    }
}

type ResponseStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, Status>> + Send>>;

#[derive(Clone)]
struct Bidi {
    recorder: Arc<Recorder>,
    path: String,
}

impl tower::Service<Request<Streaming<Bytes>>> for Bidi {
    type Response = Response<ResponseStream>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<ResponseStream>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let recorder = Arc::clone(&self.recorder);
        let path = self.path.clone();
        Box::pin(async move {
            let metadata = request.metadata().clone();
            let failure = requested_failure(&metadata);
            let inbound = request.into_inner();
            let watch = Watch {
                recorder: Arc::clone(&recorder),
                finished: false,
            };
            let state = (inbound, recorder, path, failure, Some(watch));
            let stream = futures_util::stream::unfold(
                state,
                |(mut inbound, recorder, path, failure, mut watch)| async move {
                    match inbound.next().await {
                        Some(Ok(message)) => {
                            recorder.requests.lock().unwrap().push(message.clone());
                            let out = answer(&path, &message);
                            if let Ok(out) = &out {
                                recorder.responses.lock().unwrap().push(out.clone());
                            }
                            Some((out, (inbound, recorder, path, failure, watch)))
                        }
                        Some(Err(status)) => {
                            Some((Err(status), (inbound, recorder, path, None, watch)))
                        }
                        None => {
                            if let Some(watch) = watch.take() {
                                watch.finish();
                            }
                            failure
                                .map(|status| (Err(status), (inbound, recorder, path, None, None)))
                        }
                    }
                },
            );
            Ok(with_echo(&metadata, Box::pin(stream) as ResponseStream))
        })
    }
}

#[derive(Clone)]
struct ClientStream {
    recorder: Arc<Recorder>,
    path: String,
}

impl tower::Service<Request<Streaming<Bytes>>> for ClientStream {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let recorder = Arc::clone(&self.recorder);
        let path = self.path.clone();
        Box::pin(async move {
            let metadata = request.metadata().clone();
            let mut inbound = request.into_inner();
            let mut last = None;
            while let Some(message) = inbound.next().await {
                let message = message?;
                recorder.requests.lock().unwrap().push(message.clone());
                last = Some(message);
            }
            let last = last.ok_or_else(|| Status::invalid_argument("no message"))?;
            let out = answer(&path, &last)?;
            recorder.responses.lock().unwrap().push(out.clone());
            Ok(with_echo(&metadata, out))
        })
    }
}

#[derive(Clone)]
struct ServerStream {
    recorder: Arc<Recorder>,
    path: String,
}

impl tower::Service<Request<Bytes>> for ServerStream {
    type Response = Response<ResponseStream>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<ResponseStream>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let recorder = Arc::clone(&self.recorder);
        let path = self.path.clone();
        Box::pin(async move {
            let metadata = request.metadata().clone();
            let number = |key| meta(&metadata, key).and_then(|v| v.parse::<u64>().ok());
            let count = number("x-count").unwrap_or(3) as usize;
            let interval = number("x-interval-ms").map(Duration::from_millis);
            let stall_after = number("x-stall-after").map(|n| n as usize);
            let message = request.into_inner();
            recorder.requests.lock().unwrap().push(message.clone());
            let out = answer(&path, &message)?;
            let watch = Watch {
                recorder: Arc::clone(&recorder),
                finished: false,
            };
            let pacing = Pacing {
                count,
                interval,
                stall_after,
            };
            let state = (0, Some(watch), requested_failure(&metadata));
            let stream = futures_util::stream::unfold(state, move |(sent, watch, failure)| {
                let (recorder, out) = (Arc::clone(&recorder), out.clone());
                async move {
                    pacing.before(sent).await;
                    if sent < count {
                        recorder.responses.lock().unwrap().push(out.clone());
                        return Some((Ok(out), (sent + 1, watch, failure)));
                    }
                    if let Some(watch) = watch {
                        watch.finish();
                    }
                    failure.map(|status| (Err(status), (sent + 1, None, None)))
                }
            });
            Ok(with_echo(&metadata, Box::pin(stream) as ResponseStream))
        })
    }
}

/// When a server stream sends.
#[derive(Clone, Copy)]
struct Pacing {
    count: usize,
    interval: Option<Duration>,
    stall_after: Option<usize>,
}

impl Pacing {
    /// Waits before the item after `sent` responses: forever once stalled, else the
    /// interval between two responses.
    async fn before(self, sent: usize) {
        if self.stall_after == Some(sent) {
            std::future::pending::<()>().await;
        }
        if let (Some(interval), true) = (self.interval, sent > 0 && sent < self.count) {
            tokio::time::sleep(interval).await;
        }
    }
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub recorder: Arc<Recorder>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Starts the echo server on 127.0.0.1 without any layer.
pub async fn start_server() -> TestServer {
    start_server_with(tonic::transport::Server::builder(), EchoService::default()).await
}

/// Starts `service` on 127.0.0.1 with the layers of `builder`.
pub async fn start_server_with<L, ResBody>(
    builder: tonic::transport::Server<L>,
    service: EchoService,
) -> TestServer
where
    L: tower::Layer<EchoService> + Send + 'static,
    L::Service: tower::Service<http::Request<TonicBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<TonicBody>>>::Future: Send,
    <L::Service as tower::Service<http::Request<TonicBody>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Arc::clone(&service.recorder);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = builder
            .serve_with_incoming_shutdown(service, incoming, async {
                let _ = rx.await;
            })
            .await;
    });
    TestServer {
        addr,
        recorder,
        _shutdown: tx,
    }
}
