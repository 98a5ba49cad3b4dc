//! The listener: accepts connections within its limit, serves HTTP/2 (and HTTP/1.1 for
//! pass-through), closes connections that do not start in time or stay idle, and drains
//! gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::ProxySettings;
use super::accept::{Admission, Admitted};
use super::activity::{Activity, Counted};
use super::h2_server::{self, H2Connection};
use super::limits::ListenerLimits;
use super::linger::Lingering;
use super::opening::{Protocol, Replay, read_opening};
use super::resets::{CallWatch, ResetGuard};
use super::turn_write::AfterTurn;
use super::upstream::{DialTls, Route, Upstream};
use crate::budget::MemoryBudget;
use crate::error::BoxError;
use crate::grpc::encoding::{self, BLOSCAR};
use crate::layer::{Bloscar, BloscarLayer, BoxBody, Role};
use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::{ConnectionTimeout, Metrics};
use crate::tls::{HopStream, HopTls, ServerTls};

/// Every plain-HTTP call fails this way while the upstream is down: one line per call
/// would flood the log.
static UPSTREAM_FAILED: LogSite = LogSite::new("proxy_upstream_failed");
/// One line per connection closed for its resets: an attacker opens thousands.
static RESET_FLOOD: LogSite = LogSite::new("proxy_reset_flood");

/// The layer of one proxy listener.
fn layer(settings: &ProxySettings, metrics: Arc<Metrics>) -> BloscarLayer {
    BloscarLayer::new(settings.role, Arc::clone(&settings.codec))
        .max_message_bytes(settings.max_message_bytes)
        .max_http_body_bytes(settings.max_http_body_bytes)
        .unknown_peer(settings.unknown_peer)
        .stream_idle_timeout(settings.stream_idle_timeout)
        .peer_name(&settings.forward)
        .memory_budget(settings.memory.clone())
        .metrics(metrics)
}

/// The HTTP/1 server settings of a listener with `limits` (HTTP/2 is served on h2
/// directly: see [`h2_server`](super::h2_server)).
fn http1_builder(limits: &ListenerLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    // The timer bounds how long a client may take to send each request's headers
    // (including the wait for the next request on a kept-alive connection).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout);
    builder
}

/// What every connection of one listener shares.
struct Shared {
    listener: &'static str,
    /// Whether calls from a peer sidecar count toward a connection's premature resets:
    /// not at the inbound, where one connection carries many clients' calls.
    judge_peer_calls: bool,
    memory: MemoryBudget,
    limits: ListenerLimits,
    http1: http1::Builder,
    http2: h2::server::Builder,
    layer: BloscarLayer,
    /// The upstream client that every connection's own client copies (see
    /// [`Upstream::with_own_connections`]).
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// TLS served on accepted connections.
    tls: Option<Arc<ServerTls>>,
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, sends GOAWAY on
/// every connection, and returns once in-flight streams finish or `grace` has passed.
pub async fn serve(
    listener: TcpListener,
    settings: ProxySettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> io::Result<()> {
    let name = settings.role.name();
    let dial_tls = match &settings.hop_tls {
        HopTls::Dial(client) => Some(DialTls {
            client: Arc::clone(client),
            metrics: Arc::clone(&metrics),
        }),
        _ => None,
    };
    let upstream = Upstream::new(
        &settings.forward,
        name,
        settings.unknown_peer,
        settings.resolve,
        dial_tls,
        Arc::clone(&metrics),
    )
    .map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("forward address {:?}: {err}", settings.forward),
        )
    })?;
    let limits = settings.limits;
    let shared = Arc::new(Shared {
        listener: name,
        judge_peer_calls: settings.role == Role::Outbound,
        memory: settings.memory.clone(),
        limits,
        http1: http1_builder(&limits),
        http2: h2_server::builder(settings.role),
        layer: layer(&settings, Arc::clone(&metrics)),
        upstream,
        metrics: Arc::clone(&metrics),
        tls: match &settings.hop_tls {
            HopTls::Serve(server) => Some(Arc::clone(server)),
            _ => None,
        },
    });
    let local = listener.local_addr()?;
    let mut admission = Admission::new(name, local, limits.max_connections, Arc::clone(&metrics));
    metrics.listener_started(name);
    if !matches!(settings.hop_tls, HopTls::Off) {
        metrics.tls_started(name);
    }
    tracing::info!(
        %local,
        role = name,
        forward = %settings.forward,
        hop_tls = ?settings.hop_tls,
        max_connections = limits.max_connections,
        handshake_timeout_secs = limits.handshake_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "listening"
    );

    // Every connection holds a receiver until it has ended: `closed` then tells the
    // drain that all are gone.
    let (draining, _) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer, admitted) = tokio::select! {
            accepted = admission.accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(client = %peer, error = %err, "TCP_NODELAY not set");
        }
        tokio::spawn(serve_connection(
            stream,
            peer,
            admitted,
            Arc::clone(&shared),
            draining.subscribe(),
        ));
    }
    drop(listener);
    draining.send_replace(true);
    tracing::info!(%local, role = name, grace_secs = grace.as_secs(), "draining connections");
    tokio::select! {
        () = draining.closed() => tracing::info!(%local, role = name, "all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(%local, role = name, "grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Serves one accepted connection until it ends: the opening within the handshake
/// timeout, then HTTP until the client leaves, the connection stays idle too long, or the
/// listener drains.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shared: Arc<Shared>,
    mut draining: watch::Receiver<bool>,
) {
    // Keeps the connection's place within the limit until it ends.
    let _admitted = admitted;
    // The TLS handshake, if any, and the HTTP opening share the handshake timeout.
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let mut stream = match &shared.tls {
        None => HopStream::Plain(stream),
        Some(tls) => {
            let accepted = tokio::select! {
                accepted = super::secure::accept(stream, tls, peer, shared.listener, &shared.metrics, deadline) => accepted,
                _ = draining.wait_for(|draining| *draining) => return,
            };
            match accepted {
                Some(stream) => stream,
                None => return,
            }
        }
    };
    // The stream stays here, not in the reading future, so that it is closed only after
    // the outcome is counted.
    let opening = tokio::select! {
        opening = tokio::time::timeout_at(deadline, read_opening(&mut stream)) => opening,
        // A connection that has sent no request has nothing to finish.
        _ = draining.wait_for(|draining| *draining) => return,
    };
    let (protocol, io) = match opening {
        Ok(Ok((protocol, read))) => {
            tracing::trace!(client = %peer, protocol = protocol.name(), "connection opened");
            (protocol, Replay::new(read, stream))
        }
        Ok(Err(err)) => {
            tracing::debug!(client = %peer, error = %err, "connection ended before it opened");
            return;
        }
        Err(_elapsed) => {
            shared
                .metrics
                .record_connection_timeout(shared.listener, ConnectionTimeout::Handshake);
            tracing::debug!(client = %peer, "no HTTP/2 preface and SETTINGS (or HTTP/1 request) in time: closing");
            return;
        }
    };

    let activity = Activity::new();
    let resets = ResetGuard::default();
    let service = ProxyService {
        inner: super::WithConnection::new(
            shared
                .upstream
                .route(shared.layer.layer(shared.upstream.with_own_connections())),
            shared.memory.connection(),
            peer,
        ),
        activity: activity.clone(),
        resets: resets.clone(),
        judge_peer_calls: shared.judge_peer_calls,
    };
    let (io, flusher) = super::turn_write::gathered(Lingering::new(io));
    let watched = Watched {
        peer,
        shared: &shared,
        draining,
        activity,
        resets,
    };
    match protocol {
        Protocol::Http2 => {
            // The preface and SETTINGS are in hand: the handshake only answers them.
            let connection = match H2Connection::handshake(io, &shared.http2, service).await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::debug!(client = %peer, error = %err, "HTTP/2 handshake failed");
                    return;
                }
            };
            watched.drive(flusher.around(connection)).await;
        }
        Protocol::Http1 => {
            let connection = shared
                .http1
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            watched.drive(flusher.around(connection)).await;
        }
    }
}

/// A connection's future that can be asked to finish its open calls and end.
trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<T, S> Graceful for H2Connection<T, S>
where
    H2Connection<T, S>: Future,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: Unpin,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        H2Connection::graceful_shutdown(self.get_mut());
    }
}

impl<I> Graceful for http1::Connection<I, TowerToHyperService<ProxyService>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

/// What ends a served connection besides its client: the listener's drain, the idle
/// timeout, and a flood of cancelled calls.
struct Watched<'a> {
    peer: SocketAddr,
    shared: &'a Shared,
    draining: watch::Receiver<bool>,
    activity: Activity,
    resets: ResetGuard,
}

impl Watched<'_> {
    /// Drives `connection` until it ends, asking it to finish gracefully when the
    /// listener drains, no call came for the idle timeout, or its calls were mostly
    /// cancelled.
    async fn drive<C, T, E>(mut self, connection: AfterTurn<C, T>)
    where
        C: Graceful<Output = Result<(), E>>,
        T: tokio::io::AsyncWrite + Unpin,
        E: std::fmt::Display,
    {
        let shared = self.shared;
        let peer = self.peer;
        let mut connection = pin!(connection);
        let mut idle = pin!(self.activity.idle_for(shared.limits.idle_timeout));
        let mut reset_flood = pin!(self.resets.tripped());
        let mut closing = false;
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                _ = self.draining.wait_for(|draining| *draining), if !closing => {
                    closing = true;
                    connection.as_mut().connection().graceful_shutdown();
                }
                () = &mut idle, if !closing => {
                    closing = true;
                    shared
                        .metrics
                        .record_connection_timeout(shared.listener, ConnectionTimeout::Idle);
                    tracing::debug!(client = %peer, "no call for the idle timeout: closing");
                    connection.as_mut().connection().graceful_shutdown();
                }
                () = &mut reset_flood, if !closing => {
                    closing = true;
                    shared.metrics.record_connection_reset_flood(shared.listener);
                    warn_limited!(
                        RESET_FLOOD,
                        client = %peer,
                        role = shared.listener,
                        "most calls on this connection were cancelled before their answer: closing it"
                    );
                    connection.as_mut().connection().graceful_shutdown();
                }
            }
        };
        if let Err(err) = result {
            tracing::debug!(client = %peer, error = %err, "connection ended with an error");
        }
    }
}

/// The service of one connection: the bloscar layer over the upstream client, with each
/// call counted open until its response body ends. Failures that the layer did not turn
/// into a gRPC status are failures to reach the upstream for plain HTTP, answered with
/// 502 as any reverse proxy does.
#[derive(Clone)]
struct ProxyService {
    inner: super::WithConnection<Route<Bloscar<Upstream>>>,
    activity: Activity,
    resets: ResetGuard,
    judge_peer_calls: bool,
}

impl ProxyService {
    /// Starts watching a call for a premature reset.
    fn watch<B>(&self, request: &Request<B>) -> CallWatch {
        let from_peer = encoding::accepts(request.headers(), BLOSCAR);
        self.resets
            .call_started(self.judge_peer_calls || !from_peer)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<B> Service<Request<B>> for ProxyService
where
    super::WithConnection<Route<Bloscar<Upstream>>>:
        Service<Request<B>, Response = Response<BoxBody>, Error = BoxError>,
    <super::WithConnection<Route<Bloscar<Upstream>>> as Service<Request<B>>>::Future:
        Send + 'static,
    B: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<BoxBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The upstream client queues requests itself and never refuses readiness; a
        // failure would surface again from `call` and become a 502 there.
        Service::<Request<B>>::poll_ready(&mut self.inner, cx).map(|_| Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = self.activity.call_started();
        let watch = self.watch(&request);
        // The service polled ready takes this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A client that opened and reset the stream at once (rapid reset) never gets
        // here: the HTTP/2 connection looks at the reset before it first polls the call.
        Box::pin(async move {
            let response = inner.call(request).await;
            watch.answered();
            let response = response.unwrap_or_else(|err| {
                warn_limited!(UPSTREAM_FAILED, error = %err, "upstream request failed");
                let mut response = Response::new(BoxBody::default());
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
            });
            Ok(response.map(|body| BoxBody::new(Counted::new(body, call))))
        })
    }
}
