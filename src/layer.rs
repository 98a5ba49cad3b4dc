//! The bloscar tower layer: encodes and decodes gRPC messages per role, and negotiates the
//! `bloscar` encoding with the peer through `grpc-encoding` / `grpc-accept-encoding`.
//!
//! - [`Role::Outbound`] (beside a client): advertises `bloscar` to the peer, encodes
//!   request messages once the peer is known to read them, decodes bloscar responses and
//!   hides the token from the client app.
//! - [`Role::Inbound`] (beside a server): decodes bloscar requests into identity for the
//!   app, encodes responses only when the request advertised `bloscar`, and advertises
//!   `bloscar` on every gRPC response.
//!
//! Anything that is not gRPC passes through untouched. The same layer serves the sidecar
//! and Rust services: wrap a tonic `Channel` with an outbound layer, or put an inbound
//! layer in `tonic::transport::Server::builder().layer(...)`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

use crate::grpc::encoding::{self, BLOSCAR, Encoding, GRPC_ENCODING};
use crate::grpc::error_body::{GrpcErrorBody, status_of};
use crate::grpc::{self, Code, ErrorSlot, Message, MessageBody, Status, Transform};
use crate::locate::Direction;
use crate::metrics::{Metrics, Outcome, StreamGuard};
use crate::proxy::{ProxySettings, Role, UnknownPeer};
use crate::{BoxError, MessageCodec};

/// The body type the layer hands to the service it wraps and returns to its caller.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// What the outbound side knows of its peer.
const PEER_UNKNOWN: u8 = 0;
const PEER_SPEAKS_BLOSCAR: u8 = 1;
const PEER_PLAIN: u8 = 2;

struct Shared {
    role: Role,
    codec: Arc<MessageCodec>,
    max_message_bytes: usize,
    unknown_peer: UnknownPeer,
    peer: AtomicU8,
    metrics: Arc<Metrics>,
    /// Bounds the messages transformed at once across all streams of the layer.
    pool: Arc<Semaphore>,
}

/// Transforms run at once per layer: enough to keep every core busy while one waits.
fn pool_size() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

/// A tower layer that speaks the bloscar encoding on one side of a gRPC link.
///
/// All services made by one layer share what was learned of the peer, so use one layer
/// per upstream.
#[derive(Clone)]
pub struct BloscarLayer {
    shared: Arc<Shared>,
}

impl BloscarLayer {
    /// A layer for `role` with default limits: 64 MiB messages, identity towards a peer
    /// until it advertises `bloscar`, metrics kept in a private registry.
    pub fn new(role: Role, codec: Arc<MessageCodec>) -> Self {
        BloscarLayer {
            shared: Arc::new(Shared {
                role,
                codec,
                max_message_bytes: 64 << 20,
                unknown_peer: UnknownPeer::default(),
                peer: AtomicU8::new(PEER_UNKNOWN),
                metrics: Arc::new(Metrics::new()),
                pool: Arc::new(Semaphore::new(pool_size())),
            }),
        }
    }

    /// The client-side layer (for a tonic `Channel`): encodes requests, decodes responses.
    pub fn client(codec: Arc<MessageCodec>) -> Self {
        BloscarLayer::new(Role::Outbound, codec)
    }

    /// The server-side layer (for `tonic::transport::Server::builder().layer(...)`):
    /// decodes requests, encodes responses.
    pub fn server(codec: Arc<MessageCodec>) -> Self {
        BloscarLayer::new(Role::Inbound, codec)
    }

    /// The layer of one proxy listener.
    pub fn from_settings(settings: &ProxySettings, metrics: Arc<Metrics>) -> Self {
        BloscarLayer::new(settings.role, Arc::clone(&settings.codec))
            .max_message_bytes(settings.max_message_bytes)
            .unknown_peer(settings.unknown_peer)
            .metrics(metrics)
    }

    /// Largest message buffered, after any decompression.
    pub fn max_message_bytes(self, max: usize) -> Self {
        self.with(|s| s.max_message_bytes = max)
    }

    /// How the outbound side treats a peer whose capability it has not seen yet.
    pub fn unknown_peer(self, unknown_peer: UnknownPeer) -> Self {
        self.with(|s| s.unknown_peer = unknown_peer)
    }

    /// Where the layer records its metrics.
    pub fn metrics(self, metrics: Arc<Metrics>) -> Self {
        self.with(|s| s.metrics = metrics)
    }

    fn with(self, edit: impl FnOnce(&mut Shared)) -> Self {
        // Settings are fixed once services exist; before that the layer is the only owner.
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| Shared {
            role: shared.role,
            codec: Arc::clone(&shared.codec),
            max_message_bytes: shared.max_message_bytes,
            unknown_peer: shared.unknown_peer,
            peer: AtomicU8::new(shared.peer.load(Ordering::Relaxed)),
            metrics: Arc::clone(&shared.metrics),
            pool: Arc::clone(&shared.pool),
        });
        edit(&mut shared);
        BloscarLayer {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for BloscarLayer {
    type Service = Bloscar<S>;

    fn layer(&self, inner: S) -> Bloscar<S> {
        Bloscar {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`BloscarLayer`].
#[derive(Clone)]
pub struct Bloscar<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

fn boxed<B>(body: B) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

impl<S, B, RB> Service<Request<B>> for Bloscar<S>
where
    S: Service<Request<BoxBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<BoxBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service polled ready takes this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !grpc::is_grpc(request.headers()) {
            let future = inner.call(request.map(boxed));
            return Box::pin(future.map(|result| {
                let response = result.map_err(Into::into)?;
                Ok(response.map(boxed))
            }));
        }
        // Encoding and decoding change a gRPC body's length, and gRPC's own framing
        // delimits messages: a declared length would no longer hold.
        request.headers_mut().remove(CONTENT_LENGTH);
        let shared = Arc::clone(&self.shared);
        let method: Arc<str> = Arc::from(request.uri().path());
        let slot = ErrorSlot::default();
        let guard = shared.metrics.stream_started();
        let (request, accepts_bloscar) = match shared.role {
            Role::Outbound => outbound_request(&shared, &method, &slot, request),
            Role::Inbound => inbound_request(&shared, &method, &slot, request),
        };
        let call = Call {
            shared,
            method,
            slot,
            guard,
            accepts_bloscar,
        };
        Box::pin(
            inner
                .call(request)
                .map(move |result| Ok(call.finish(result.map_err(Into::into)))),
        )
    }
}

/// What a gRPC call carries from its request to its response.
struct Call {
    shared: Arc<Shared>,
    method: Arc<str>,
    slot: ErrorSlot,
    guard: StreamGuard,
    accepts_bloscar: bool,
}

impl Call {
    /// The response for the client: the upstream's, transformed per role, or a
    /// trailers-only status when the call failed before a response.
    fn finish<RB>(self, result: Result<Response<RB>, BoxError>) -> Response<BoxBody>
    where
        RB: Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        let Call {
            shared,
            method,
            slot,
            guard,
            accepts_bloscar,
        } = self;
        let response = match result {
            // A request that failed on its way in leaves the app with a broken stream only,
            // so the client learns the real cause rather than the app's answer.
            Ok(response) => match slot.get() {
                None => response,
                Some(status) => return failed(&shared, &method, status),
            },
            Err(err) => {
                let status = slot.get().unwrap_or_else(|| status_of(&*err));
                return failed(&shared, &method, status);
            }
        };
        let mut response = match shared.role {
            Role::Outbound => outbound_response(&shared, &method, &slot, response),
            Role::Inbound => inbound_response(&shared, &method, &slot, accepts_bloscar, response),
        };
        response.headers_mut().remove(CONTENT_LENGTH);
        let metrics = Arc::clone(&shared.metrics);
        response.map(|body| {
            GrpcErrorBody::new(body, slot, move |status: &Status| {
                metrics.record_error(status.code.label());
                drop(guard);
            })
            .boxed_unsync()
        })
    }
}

/// A trailers-only response ending a call that failed before its response started.
fn failed(shared: &Shared, method: &str, status: Status) -> Response<BoxBody> {
    tracing::warn!(%method, code = status.code.label(), message = %status.message, "gRPC call failed");
    shared.metrics.record_error(status.code.label());
    let mut response: Response<BoxBody> = status.into_response();
    if shared.role == Role::Inbound {
        encoding::add_accept(response.headers_mut(), BLOSCAR);
    }
    response
}

/// Outbound request: advertise `bloscar` to the peer and encode once the peer reads it.
/// Messages of methods where no tensor can be found travel as the app sent them.
fn outbound_request<B>(
    shared: &Arc<Shared>,
    method: &Arc<str>,
    slot: &ErrorSlot,
    request: Request<B>,
) -> (Request<BoxBody>, bool)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    encoding::add_accept(&mut parts.headers, BLOSCAR);
    let peer_reads_bloscar = match shared.peer.load(Ordering::Relaxed) {
        PEER_SPEAKS_BLOSCAR => true,
        PEER_PLAIN => false,
        _ => shared.unknown_peer == UnknownPeer::Encode,
    };
    let source = Encoding::from_headers(&parts.headers);
    let body = match source {
        Ok(source)
            if peer_reads_bloscar
                && source != Encoding::Bloscar
                && shared.codec.locator().knows(method, Direction::Request) =>
        {
            parts
                .headers
                .insert(GRPC_ENCODING, HeaderValue::from_static(BLOSCAR));
            encoding_body(shared, method, Direction::Request, source, slot, body)
        }
        _ => boxed(body),
    };
    (Request::from_parts(parts, body), false)
}

/// Outbound response: learn the peer's capability, decode bloscar, hide the token.
fn outbound_response<RB>(
    shared: &Arc<Shared>,
    method: &Arc<str>,
    slot: &ErrorSlot,
    response: Response<RB>,
) -> Response<BoxBody>
where
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let peer = if encoding::accepts(&parts.headers, BLOSCAR) {
        PEER_SPEAKS_BLOSCAR
    } else {
        PEER_PLAIN
    };
    if shared.peer.swap(peer, Ordering::Relaxed) != peer {
        tracing::info!(
            speaks_bloscar = peer == PEER_SPEAKS_BLOSCAR,
            "learned the peer's capability"
        );
    }
    encoding::remove_accept(&mut parts.headers, BLOSCAR);
    let body = if Encoding::from_headers(&parts.headers) == Ok(Encoding::Bloscar) {
        parts.headers.remove(GRPC_ENCODING);
        decoding_body(shared, method, Direction::Response, slot, body)
    } else {
        boxed(body)
    };
    Response::from_parts(parts, body)
}

/// Inbound request: decode bloscar into identity, keep the token from the app.
fn inbound_request<B>(
    shared: &Arc<Shared>,
    method: &Arc<str>,
    slot: &ErrorSlot,
    request: Request<B>,
) -> (Request<BoxBody>, bool)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let accepts_bloscar = encoding::accepts(&parts.headers, BLOSCAR);
    encoding::remove_accept(&mut parts.headers, BLOSCAR);
    let body = if Encoding::from_headers(&parts.headers) == Ok(Encoding::Bloscar) {
        parts.headers.remove(GRPC_ENCODING);
        decoding_body(shared, method, Direction::Request, slot, body)
    } else {
        boxed(body)
    };
    (Request::from_parts(parts, body), accepts_bloscar)
}

/// Inbound response: advertise `bloscar`; encode when the request said it reads it and
/// the method may carry tensors.
fn inbound_response<RB>(
    shared: &Arc<Shared>,
    method: &Arc<str>,
    slot: &ErrorSlot,
    accepts_bloscar: bool,
    response: Response<RB>,
) -> Response<BoxBody>
where
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    encoding::add_accept(&mut parts.headers, BLOSCAR);
    let trailers_only = parts.headers.contains_key("grpc-status");
    let body = match Encoding::from_headers(&parts.headers) {
        Ok(source)
            if accepts_bloscar
                && !trailers_only
                && grpc::is_grpc(&parts.headers)
                && source != Encoding::Bloscar
                && shared.codec.locator().knows(method, Direction::Response) =>
        {
            parts
                .headers
                .insert(GRPC_ENCODING, HeaderValue::from_static(BLOSCAR));
            encoding_body(shared, method, Direction::Response, source, slot, body)
        }
        _ => boxed(body),
    };
    Response::from_parts(parts, body)
}

fn decoding_body<B>(
    shared: &Arc<Shared>,
    method: &Arc<str>,
    direction: Direction,
    slot: &ErrorSlot,
    body: B,
) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let transform = DecodeTransform {
        shared: Arc::clone(shared),
        method: Arc::clone(method),
        direction,
    };
    transformed_body(shared, transform, slot, body)
}

fn encoding_body<B>(
    shared: &Arc<Shared>,
    method: &Arc<str>,
    direction: Direction,
    source: Encoding,
    slot: &ErrorSlot,
    body: B,
) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let transform = EncodeTransform {
        shared: Arc::clone(shared),
        method: Arc::clone(method),
        direction,
        source,
    };
    transformed_body(shared, transform, slot, body)
}

/// `body` with `transform` applied to each whole message, on the shared transform pool.
fn transformed_body<B>(
    shared: &Shared,
    transform: impl Transform,
    slot: &ErrorSlot,
    body: B,
) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    boxed(
        MessageBody::new(
            body,
            Arc::new(transform),
            shared.max_message_bytes,
            slot.clone(),
        )
        .bounded(Arc::clone(&shared.pool)),
    )
}

/// Writes each message as a bloscar container when it holds a tensor worth compressing,
/// as identity (flag 0) otherwise. Messages the app compressed with a standard encoding
/// are decoded first, within the message size limit.
struct EncodeTransform {
    shared: Arc<Shared>,
    method: Arc<str>,
    direction: Direction,
    source: Encoding,
}

impl Transform for EncodeTransform {
    fn transform(&self, message: Message) -> Result<Message, Status> {
        let plain = if message.compressed {
            match self.source {
                Encoding::Gzip | Encoding::Deflate | Encoding::Zstd => {
                    Bytes::from(encoding::decompress(
                        self.source,
                        &message.data,
                        self.shared.max_message_bytes,
                    )?)
                }
                Encoding::Identity | Encoding::Bloscar => {
                    return Err(Status::new(
                        Code::Internal,
                        "compressed message without a grpc-encoding",
                    ));
                }
            }
        } else {
            message.data
        };
        let started = Instant::now();
        let metrics = &self.shared.metrics;
        match self
            .shared
            .codec
            .encode(&self.method, self.direction, &plain)
        {
            Ok(Some(encoded)) => {
                metrics.record_message(
                    self.direction,
                    Outcome::Encoded,
                    &self.method,
                    plain.len(),
                    encoded.bytes.len(),
                    started.elapsed(),
                );
                Ok(Message {
                    compressed: true,
                    data: Bytes::from(encoded.bytes),
                })
            }
            Ok(None) => {
                metrics.record_message(
                    self.direction,
                    Outcome::Passed,
                    &self.method,
                    plain.len(),
                    plain.len(),
                    started.elapsed(),
                );
                Ok(Message {
                    compressed: false,
                    data: plain,
                })
            }
            Err(err) => {
                // The message still travels, as identity: a failure to compress must not
                // fail the call.
                tracing::warn!(method = %self.method, error = %err, "encoding failed; sending the message as identity");
                metrics.record_error("encode_failed");
                Ok(Message {
                    compressed: false,
                    data: plain,
                })
            }
        }
    }
}

/// Reads bloscar containers back into the exact original messages; identity messages
/// pass as they are.
struct DecodeTransform {
    shared: Arc<Shared>,
    method: Arc<str>,
    direction: Direction,
}

impl Transform for DecodeTransform {
    fn transform(&self, message: Message) -> Result<Message, Status> {
        let metrics = &self.shared.metrics;
        if !message.compressed {
            let len = message.data.len();
            metrics.record_message(
                self.direction,
                Outcome::Passed,
                &self.method,
                len,
                len,
                std::time::Duration::ZERO,
            );
            return Ok(message);
        }
        let started = Instant::now();
        let plain = self
            .shared
            .codec
            .decode(&message.data)
            .map_err(|err| Status::from(&err))?;
        if plain.len() > self.shared.max_message_bytes {
            return Err(Status::new(
                Code::ResourceExhausted,
                format!(
                    "decoded message of {} bytes exceeds the limit of {} bytes",
                    plain.len(),
                    self.shared.max_message_bytes
                ),
            ));
        }
        metrics.record_message(
            self.direction,
            Outcome::Decoded,
            &self.method,
            plain.len(),
            message.data.len(),
            started.elapsed(),
        );
        Ok(Message {
            compressed: false,
            data: Bytes::from(plain),
        })
    }
}
