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
//! Messages stream through chunk by chunk in both directions ([`encode`], [`decode`]);
//! negotiation is pure functions over header maps ([`negotiate`]). A call's
//! `grpc-timeout` is enforced, and an optional idle limit
//! ([`BloscarLayer::stream_idle_timeout`]): either ends the call with DEADLINE_EXCEEDED
//! and resets the upstream stream. Anything that is not gRPC passes through untouched. The same layer serves the sidecar and Rust services:
//! wrap a tonic `Channel` with an outbound layer, or put an inbound layer in
//! `tonic::transport::Server::builder().layer(...)`.

mod access;
mod clock;
mod count;
mod deadline;
pub mod decode;
pub mod encode;
mod feedback;
mod intake;
mod keep;
pub mod link;
pub mod negotiate;
mod peer;
mod pipeline;
mod rest;
mod role;
mod whole;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

use self::access::Access;
pub use self::access::ClientAddr;
use self::deadline::{CallTimer, TimedResponse, WatchedRequest};
use self::feedback::CallCosts;
pub use self::keep::keeping;
use self::link::SharedTiming;
pub use self::negotiate::BodyPlan;
pub use self::peer::{PeerCapability, PeerEndpoint};
pub(crate) use self::pipeline::SentMessage;
pub use self::role::Role;
use crate::MessageCodec;
use crate::budget::{ConnectionShare, MemoryBudget};
use crate::codec::tune::link::LinkEstimator;
pub use crate::config::UnknownPeer;
use crate::error::BoxError;
use crate::grpc::encoding::{self, BLOSCAR};
use crate::grpc::error_body::{GrpcErrorBody, status_of};
use crate::grpc::{self, ErrorSlot, Status};
use crate::locate::Direction;
use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::{Metrics, StreamGuard};
use crate::stream_encoder::{DEFAULT_CHUNK_LEN, EncoderContext, ModelSlot};
use crate::trace;

/// The body type the layer hands to the service it wraps and returns to its caller.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// What every service made by one layer shares.
struct Shared {
    role: Role,
    codec: Arc<MessageCodec>,
    max_message_bytes: usize,
    /// Largest KServe v2 REST inference body held whole.
    max_http_body_bytes: usize,
    peer: PeerCapability,
    /// Outbound: whether the peer reads `Content-Encoding: bloscar` on REST bodies,
    /// learned from its REST responses only (a peer whose sidecar predates REST support
    /// advertises `bloscar` for gRPC alone).
    rest_peer: PeerCapability,
    metrics: Arc<Metrics>,
    /// Bounds the Blosc jobs running at once across all streams of the layer.
    jobs: Arc<Semaphore>,
    /// Outbound: the measured link to the peer.
    link: Arc<LinkEstimator>,
    /// The peer, for logs: the upstream's address when the layer knows it.
    peer_name: Arc<str>,
    /// How long a call may go without anything moving; `None`: no limit.
    stream_idle_timeout: Option<Duration>,
    /// What the bodies may hold, shared with every other layer of the process.
    memory: MemoryBudget,
}

/// Blosc jobs at once per layer: one per core, plus one so a core never idles while a
/// job's result is being handed over.
fn job_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() + 1)
}

/// A tower layer that speaks the bloscar encoding on one side of a gRPC link.
///
/// All services made by one layer share what was learned of the peer, so use one layer
/// per upstream; a proxy that spreads calls over several endpoints of the peer tells the
/// layer which one each call goes to with a [`PeerEndpoint`] in the request's extensions,
/// and what is learned is then kept per endpoint.
#[derive(Clone)]
pub struct BloscarLayer {
    shared: Arc<Shared>,
}

impl BloscarLayer {
    /// A layer for `role` with default limits: messages up to gRPC's maximum (4 GiB - 1),
    /// identity towards a peer until it advertises `bloscar`, metrics kept in a private
    /// registry.
    pub fn new(role: Role, codec: Arc<MessageCodec>) -> Self {
        BloscarLayer {
            shared: Arc::new(Shared {
                role,
                codec,
                max_message_bytes: u32::MAX as usize,
                max_http_body_bytes: rest::DEFAULT_MAX_BODY,
                peer: PeerCapability::new(UnknownPeer::default()),
                rest_peer: PeerCapability::new(UnknownPeer::Identity),
                metrics: Arc::new(Metrics::new()),
                jobs: Arc::new(Semaphore::new(job_slots())),
                link: Arc::new(LinkEstimator::new()),
                peer_name: Arc::from("peer"),
                stream_idle_timeout: None,
                memory: MemoryBudget::unlimited(),
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

    /// Largest gRPC message accepted, after any decompression.
    pub fn max_message_bytes(self, max: usize) -> Self {
        self.with(|s| s.max_message_bytes = max)
    }

    /// Largest KServe v2 REST inference body held whole to compress or restore it: a
    /// larger request fails with HTTP 413, a larger response passes as it is.
    pub fn max_http_body_bytes(self, max: usize) -> Self {
        self.with(|s| s.max_http_body_bytes = max)
    }

    /// How the outbound side treats a peer whose capability it has not seen yet.
    pub fn unknown_peer(self, unknown_peer: UnknownPeer) -> Self {
        self.with(|s| s.peer = PeerCapability::new(unknown_peer))
    }

    /// The peer's name in logs, e.g. the upstream's `host:port`.
    pub fn peer_name(self, name: &str) -> Self {
        self.with(|s| s.peer_name = Arc::from(name))
    }

    /// Ends a gRPC call with DEADLINE_EXCEEDED once nothing has moved for `timeout`: no
    /// body bytes either way and no response headers. `None` or zero: no limit (the
    /// default), since a call may legitimately stay quiet for as long as its client
    /// allows; a client's own deadline (`grpc-timeout`) is enforced either way.
    pub fn stream_idle_timeout(self, timeout: Option<Duration>) -> Self {
        self.with(|s| s.stream_idle_timeout = timeout.filter(|t| !t.is_zero()))
    }

    /// The memory budget the layer's bodies charge what they hold to: share one per
    /// process (the sidecar gives every listener the same). Without one, a layer never
    /// waits for memory. A call whose request carries a [`ConnectionShare`] in its
    /// extensions (the proxy adds one per downstream connection) is held to that share
    /// as well.
    pub fn memory_budget(self, budget: MemoryBudget) -> Self {
        self.with(|s| s.memory = budget)
    }

    /// Where the layer records its metrics.
    pub fn metrics(self, metrics: Arc<Metrics>) -> Self {
        self.with(|s| s.metrics = metrics)
    }

    fn with(self, edit: impl FnOnce(&mut Shared)) -> Self {
        // Settings are fixed before services exist; a layer already shared is copied.
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| Shared {
            role: shared.role,
            codec: Arc::clone(&shared.codec),
            max_message_bytes: shared.max_message_bytes,
            max_http_body_bytes: shared.max_http_body_bytes,
            peer: PeerCapability::new(UnknownPeer::default()),
            rest_peer: PeerCapability::new(UnknownPeer::Identity),
            metrics: Arc::clone(&shared.metrics),
            jobs: Arc::clone(&shared.jobs),
            link: Arc::new(LinkEstimator::new()),
            peer_name: Arc::clone(&shared.peer_name),
            stream_idle_timeout: shared.stream_idle_timeout,
            memory: shared.memory.clone(),
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
    type Future = BoxFuture<'static, Result<Response<BoxBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service polled ready takes this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if let Some(model) = rest::infer_model(&request) {
            return rest::call(Arc::clone(&self.shared), inner, request, model);
        }
        if !grpc::is_grpc(request.headers()) {
            let future = inner.call(request.map(boxed));
            return Box::pin(future.map(|result| {
                let response = result.map_err(Into::into)?;
                Ok(response.map(boxed))
            }));
        }
        let shared = Arc::clone(&self.shared);
        let span = trace::call_span(
            shared.role,
            request.uri().path(),
            &shared.peer_name,
            request.headers(),
        );
        let call = Call {
            span,
            connection: request.extensions().get::<ConnectionShare>().cloned(),
            method: Arc::from(request.uri().path()),
            slot: ErrorSlot::default(),
            guard: shared.metrics.stream_started(),
            client_reads_bloscar: false,
            endpoint: request.extensions().get::<PeerEndpoint>().cloned(),
            link_rate: None,
            model: ModelSlot::default(),
            timing: SharedTiming::default(),
            access: Access::start(
                shared.role,
                request.extensions().get::<ClientAddr>().map(|c| c.0),
                &shared.peer_name,
            ),
            costs: (shared.role == Role::Outbound)
                .then(|| Arc::new(CallCosts::new(Arc::clone(shared.codec.chooser())))),
            shared,
        };
        // Only a call with a time limit gets a timer.
        let timer = CallTimer::start(
            grpc::timeout::of_headers(request.headers()),
            call.shared.stream_idle_timeout,
        );
        let (call, request) = call.request(request, timer.as_ref().map(CallTimer::watch));
        let future = inner.call(request);
        match timer {
            None => Box::pin(
                future.map(move |result| Ok(call.response(result.map_err(Into::into), None))),
            ),
            // A limit passing first drops the upstream's response future, which resets
            // the upstream stream.
            Some(timer) => Box::pin(timer.race(future).map(move |(timer, outcome)| {
                Ok(match outcome {
                    Ok(result) => call.response(result.map_err(Into::into), Some(timer)),
                    Err(status) => call.failed(status),
                })
            })),
        }
    }
}

/// Counts a call once with the status it ended with (and writes its access line); a
/// call whose response body is dropped before its end (the client went away) counts as
/// `cancelled`.
struct CallRecord {
    metrics: Arc<Metrics>,
    method: Arc<str>,
    model: ModelSlot,
    /// The call's span, ended with the call.
    span: tracing::Span,
    done: bool,
    /// The access line's tally, when the access log is on.
    access: Option<Access>,
}

impl CallRecord {
    fn finish(&mut self, code: grpc::Code) {
        let status = code.label();
        if !std::mem::replace(&mut self.done, true) {
            // The call's span ends with the call.
            let model = self.model.get().map(String::as_str);
            trace::finish_call(&self.span, code.as_u8().into(), model);
            self.span = tracing::Span::none();
            self.metrics
                .record_call(&self.method, self.model.get().map(String::as_str), status);
            if let Some(access) = &self.access {
                access.log(&self.method, self.model.get().map(String::as_str), status);
            }
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(grpc::Code::Cancelled);
    }
}

/// What a gRPC call carries from its request to its response.
struct Call {
    shared: Arc<Shared>,
    /// The call's span ([`tracing::Span::none`] when calls are not traced).
    span: tracing::Span,
    method: Arc<str>,
    slot: ErrorSlot,
    guard: StreamGuard,
    /// Inbound: the request said the client side reads `bloscar`.
    client_reads_bloscar: bool,
    /// Outbound: the peer endpoint the proxy chose for the call, if it chose one; else
    /// the layer's one capability stands for the whole peer.
    endpoint: Option<PeerEndpoint>,
    /// The link's goodput to the peer in bytes per second: measured here (outbound) or
    /// told by the outbound (inbound).
    link_rate: Option<f64>,
    /// The model the call names, once learned.
    model: ModelSlot,
    /// How the call's bodies crossed the link.
    timing: SharedTiming,
    /// Outbound: the request's tensor costs, held for the inbound's report.
    costs: Option<Arc<CallCosts>>,
    /// The share of the downstream connection the call came on, if known.
    connection: Option<ConnectionShare>,
    /// The access log's tally, when the access log is on.
    access: Option<Access>,
}

impl Call {
    fn knows(&self, direction: Direction) -> bool {
        self.shared.codec.locator().knows(&self.method, direction)
    }

    /// The request for the upstream, its body transformed per role, and watched when the
    /// call has a time limit.
    fn request<B>(
        mut self,
        request: Request<B>,
        watch: Option<Arc<deadline::CallWatch>>,
    ) -> (Self, Request<BoxBody>)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        let body = access::Tally::request(self.access.as_ref(), body);
        // Encoding and decoding change a gRPC body's length, and gRPC's own framing
        // delimits messages: a declared length would no longer hold.
        parts.headers.remove(CONTENT_LENGTH);
        let plan = match self.shared.role {
            Role::Outbound => {
                let peer_reads = match &self.endpoint {
                    Some(endpoint) => endpoint.capability.reads_bloscar(),
                    None => self.shared.peer.reads_bloscar(),
                };
                let plan = negotiate::outbound_request(
                    &mut parts.headers,
                    peer_reads,
                    self.knows(Direction::Request),
                );
                self.link_rate = self.shared.link.rate(Instant::now());
                if let Some(value) = self.link_rate.and_then(link::rate_header) {
                    parts.headers.insert(link::LINK_RATE_HEADER, value);
                }
                plan
            }
            Role::Inbound => {
                let (reads, plan) = negotiate::inbound_request(&mut parts.headers);
                self.client_reads_bloscar = reads;
                self.link_rate = link::take_rate(&mut parts.headers);
                plan
            }
        };
        // The peer sidecar or the app continues the trace from this call's span.
        trace::inject_span(&self.span, &mut parts.headers);
        let mut body = self.body(plan, Direction::Request, body);
        if let Some(watch) = watch {
            body = boxed(WatchedRequest::new(body, watch));
        }
        (self, Request::from_parts(parts, body))
    }

    /// The response for the client: the upstream's, transformed per role (and under the
    /// call's timer, if any), or a trailers-only status when the call failed before a
    /// response.
    fn response<RB>(
        self,
        result: Result<Response<RB>, BoxError>,
        timer: Option<CallTimer>,
    ) -> Response<BoxBody>
    where
        RB: Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        let response = match result {
            // A request that failed on its way in leaves the app with a broken stream
            // only, so the client learns the real cause rather than the app's answer.
            Ok(response) => match self.slot.get() {
                None => response,
                Some(status) => return self.failed(status),
            },
            Err(err) => {
                let status = self.slot.get().unwrap_or_else(|| status_of(&*err));
                return self.failed(status);
            }
        };
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        let plan = match self.shared.role {
            Role::Outbound => {
                let (reads, plan) = negotiate::outbound_response(&mut parts.headers);
                // The endpoint that answered, when the upstream says which; else the one
                // chosen for the call.
                let endpoint = parts
                    .extensions
                    .get::<PeerEndpoint>()
                    .or(self.endpoint.as_ref());
                let (capability, peer) = match endpoint {
                    Some(e) => (&*e.capability, &*e.name),
                    None => (&self.shared.peer, &*self.shared.peer_name),
                };
                if capability.learn(reads) {
                    tracing::info!(
                        role = %Role::Outbound,
                        peer,
                        speaks_bloscar = reads,
                        "learned the peer's capability"
                    );
                }
                plan
            }
            Role::Inbound => negotiate::inbound_response(
                &mut parts.headers,
                self.client_reads_bloscar,
                self.knows(Direction::Response),
            ),
        };
        let mut body = self.body(plan, Direction::Response, body);
        if let Some(timer) = timer {
            body = boxed(TimedResponse::new(body, timer));
        }
        let Call {
            shared,
            slot,
            guard,
            access,
            method: self_method,
            model: self_model,
            span,
            ..
        } = self;
        if let Some(access) = &access {
            body = boxed(access.response(body));
        }
        let mut record = CallRecord {
            metrics: Arc::clone(&shared.metrics),
            access,
            method: Arc::clone(&self_method),
            model: self_model,
            span,
            done: false,
        };
        // A trailers-only answer has its status in the head and a body without trailers.
        if let Some(status) = Status::from_header_map(&parts.headers) {
            record.finish(status.code);
        }
        let body = GrpcErrorBody::new(body, slot, move |status: &Status| {
            record.finish(status.code);
            drop(guard);
        })
        .boxed_unsync();
        Response::from_parts(parts, body)
    }

    /// `body` with the plan applied.
    fn body<B>(&self, plan: BodyPlan, direction: Direction, body: B) -> BoxBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let shared = Arc::clone(&self.shared);
        let account = shared.memory.account(direction, self.connection.as_ref());
        match plan {
            BodyPlan::Pass => boxed(count::CountBody::new(
                body,
                Arc::clone(&shared.metrics),
                direction,
                Arc::clone(&self.method),
                Arc::clone(&self.model),
                shared.codec.locator(),
            )),
            BodyPlan::Encode { source } => {
                let context = EncoderContext {
                    chooser: Arc::clone(shared.codec.chooser()),
                    method: Arc::clone(&self.method),
                    model: Arc::clone(&self.model),
                    link_bytes_per_sec: self.link_rate,
                    chunk_len: DEFAULT_CHUNK_LEN,
                    costs: self
                        .costs
                        .clone()
                        .map(|costs| costs as Arc<dyn crate::stream_encoder::CostSink>),
                };
                // The inbound reports, with its response's trailers, how the call
                // crossed the link.
                let report = shared.role == Role::Inbound;
                boxed(encode::EncodeBody::new(
                    body,
                    shared,
                    context,
                    direction,
                    source,
                    self.slot.clone(),
                    Arc::clone(&self.timing),
                    report,
                    account,
                    self.span.clone(),
                ))
            }
            BodyPlan::Decode => {
                let call = decode::CallContext {
                    method: Arc::clone(&self.method),
                    direction,
                    slot: self.slot.clone(),
                    timing: Arc::clone(&self.timing),
                    model: Arc::clone(&self.model),
                    costs: self.costs.clone(),
                    account,
                    span: self.span.clone(),
                };
                boxed(decode::DecodeBody::new(body, shared, call))
            }
        }
    }

    /// A trailers-only response ending a call that failed before its response started.
    fn failed(self, status: Status) -> Response<BoxBody> {
        if let Some(access) = &self.access {
            access.log(
                &self.method,
                self.model.get().map(String::as_str),
                status.code.label(),
            );
        }
        static CALL_FAILED: LogSite = LogSite::new("layer_call_failed");
        warn_limited!(CALL_FAILED, method = %self.method, code = status.code.label(), message = %status.message, "gRPC call failed");
        let model = self.model.get().map(String::as_str);
        self.shared
            .metrics
            .record_call(&self.method, model, status.code.label());
        trace::finish_call(&self.span, status.code.as_u8().into(), model);
        let mut response: Response<BoxBody> = status.into_response();
        if self.shared.role == Role::Inbound {
            encoding::add_accept(response.headers_mut(), BLOSCAR);
        }
        response
    }
}
