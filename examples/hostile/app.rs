//! The app behind the pair: a KServe v2 echo server (tonic's generated service) on a
//! hyper HTTP/2 server that misbehaves on request. The `x-hostile` header of a call
//! picks what the app does with it, so that an attacker's calls and the well-behaved
//! client's reach one app over the inbound's one upstream connection, as in a pod.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloscar::pb::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;
use tower::ServiceExt;

use crate::raw::frame;
use crate::tensors::echo;

/// The request header that picks the app's behaviour; absent: echo.
pub const BEHAVIOUR: &str = "x-hostile";
/// `x-hostile: hang`: never answer (the body is left unread).
pub const HANG: &str = "hang";
/// `x-hostile: slow`: answer (echo) after [`SLOW_ANSWER`].
pub const SLOW: &str = "slow";
/// `x-hostile: sink`: read the whole request, count its bytes, answer an empty message.
pub const SINK: &str = "sink";
/// `x-hostile: bulk`: compare the request with the case's bulk request as it streams
/// in, then answer the bulk response (one shared copy, whatever the number of calls).
pub const BULK: &str = "bulk";
/// How long a `slow` call takes.
pub const SLOW_ANSWER: Duration = Duration::from_secs(5);
/// Largest message the echo service reads or writes.
pub const MAX_MESSAGE: usize = 80 << 20;

/// A request and its echo as gRPC frames, shared by every `bulk` call.
pub struct Bulk {
    /// The request frame the app expects.
    pub request: Bytes,
    /// The response frame it answers with.
    pub response: Bytes,
}

/// What the app has seen.
#[derive(Default)]
pub struct AppStats {
    /// Connections accepted (from the inbound sidecar, or direct callers).
    pub connections: AtomicU64,
    /// Errors that ended a connection (the sidecar's protocol errors, or the app's own
    /// defences tripping), with how often each happened.
    pub connection_errors: Mutex<BTreeMap<String, u64>>,
    /// Calls started.
    pub calls: AtomicU64,
    /// Calls started that carried `x-hostile` (an attacker's).
    pub hostile_calls: AtomicU64,
    /// `hang` calls whose handler is still waiting (cancelled calls are dropped).
    pub hung_now: AtomicI64,
    /// Request bytes `sink` calls read.
    pub sink_bytes: AtomicU64,
    /// `sink` calls read to their end.
    pub sink_done: AtomicU64,
    /// Request bytes `bulk` calls read.
    pub bulk_bytes: AtomicU64,
    /// `bulk` requests that arrived whole and equal to the one sent.
    pub bulk_matched: AtomicU64,
    /// `bulk` requests that arrived whole but different.
    pub bulk_differed: AtomicU64,
}

impl AppStats {
    /// A counter's value now.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

struct Shared {
    stats: Arc<AppStats>,
    echo: GrpcInferenceServiceServer<Echo>,
    bulk: Mutex<Option<Arc<Bulk>>>,
}

/// A running app.
pub struct App {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has seen.
    pub stats: Arc<AppStats>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    /// Starts the app on a free loopback port. `max_concurrent_streams` is what it
    /// announces per connection; None: no limit, as tonic and grpc-core servers default.
    pub async fn start(max_concurrent_streams: Option<u32>) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the app");
        let addr = listener.local_addr().expect("app address");
        let stats = Arc::new(AppStats::default());
        let shared = Arc::new(Shared {
            stats: stats.clone(),
            echo: GrpcInferenceServiceServer::new(Echo)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            bulk: Mutex::new(None),
        });
        let task = tokio::spawn(serve(listener, shared.clone(), max_concurrent_streams));
        App {
            addr,
            stats,
            shared,
            task,
        }
    }

    /// Sets what `bulk` calls expect and answer.
    pub fn set_bulk(&self, bulk: Arc<Bulk>) {
        *self.shared.bulk.lock().unwrap() = Some(bulk);
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    max_concurrent_streams: Option<u32>,
) {
    // Held here, so that stopping the app ends its connections too.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((socket, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = socket.set_nodelay(true);
        let stats = shared.stats.clone();
        let shared = shared.clone();
        let service = hyper::service::service_fn(move |request| handle(request, shared.clone()));
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .max_concurrent_streams(max_concurrent_streams)
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(256 << 10);
        connections.spawn(async move {
            if let Err(e) = builder
                .serve_connection(TokioIo::new(socket), service)
                .await
            {
                *stats
                    .connection_errors
                    .lock()
                    .unwrap()
                    .entry(format!("{e:?}"))
                    .or_default() += 1;
            }
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let stats = &shared.stats;
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let behaviour = request
        .headers()
        .get(BEHAVIOUR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !behaviour.is_empty() {
        stats.hostile_calls.fetch_add(1, Ordering::Relaxed);
    }
    match behaviour.as_str() {
        HANG => {
            let _waiting = Waiting::enter(&stats.hung_now);
            match std::future::pending::<Infallible>().await {}
        }
        SLOW => {
            tokio::time::sleep(SLOW_ANSWER).await;
            shared.echo.clone().oneshot(request).await
        }
        SINK => Ok(sink(request.into_body(), stats).await),
        BULK => {
            let bulk = shared.bulk.lock().unwrap().clone();
            match bulk {
                Some(bulk) => Ok(bulk_answer(request.into_body(), &bulk, stats).await),
                None => Ok(answer(None, 9)), // FAILED_PRECONDITION: no bulk message set
            }
        }
        _ => shared.echo.clone().oneshot(request).await,
    }
}

/// Counts a gauge up while a handler waits, and down when it is dropped (the call
/// ended or was cancelled).
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn enter(gauge: &'a AtomicI64) -> Waiting<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A gRPC response: `message` (a whole frame), then trailers with `status`; without a
/// message, trailers-only.
fn answer(message: Option<Bytes>, status: u32) -> Response<Body> {
    let head = Response::builder().header("content-type", "application/grpc");
    let Some(message) = message else {
        return head
            .header("grpc-status", status)
            .body(Body::empty())
            .expect("a valid response");
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(message)),
        Ok(Frame::trailers(trailers)),
    ];
    head.body(Body::new(StreamBody::new(futures_util::stream::iter(
        frames,
    ))))
    .expect("a valid response")
}

async fn sink(mut body: Incoming, stats: &AppStats) -> Response<Body> {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    stats
                        .sink_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Err(_) => return answer(None, 1), // CANCELLED: the request broke off
        }
    }
    stats.sink_done.fetch_add(1, Ordering::Relaxed);
    answer(Some(frame(false, &[])), 0)
}

async fn bulk_answer(mut body: Incoming, bulk: &Bulk, stats: &AppStats) -> Response<Body> {
    let mut offset = 0;
    let mut equal = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return answer(None, 1);
        };
        if let Some(data) = frame.data_ref() {
            let end = offset + data.len();
            equal &= bulk.request.get(offset..end) == Some(&data[..]);
            offset = end;
            stats
                .bulk_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
    if equal && offset == bulk.request.len() {
        stats.bulk_matched.fetch_add(1, Ordering::Relaxed);
        answer(Some(bulk.response.clone()), 0)
    } else {
        stats.bulk_differed.fetch_add(1, Ordering::Relaxed);
        answer(None, 15) // DATA_LOSS
    }
}

type ResponseStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<ModelStreamInferResponse, tonic::Status>> + Send>,
>;

/// Answers each request with its own tensors as outputs.
struct Echo;

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
    async fn model_infer(
        &self,
        request: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, tonic::Status> {
        Ok(tonic::Response::new(echo(request.into_inner())))
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        request: tonic::Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<tonic::Response<ResponseStream>, tonic::Status> {
        let stream = request.into_inner().map(|request| {
            request.map(|request| ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(echo(request)),
            })
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}
