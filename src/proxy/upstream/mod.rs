//! The upstream client: connections to the endpoints of the address a listener forwards to.
//!
//! The forward address names the upstream; its endpoints are the addresses it resolves
//! to ([`resolve`]): one for an IP address, one per ready pod for the name of a headless
//! Kubernetes Service. Each request goes to one endpoint, chosen by [`Route`] before the
//! bloscar layer sees the request, because whether the request may be encoded depends on
//! what that endpoint reads ([`endpoints`] has the choice and what is known of each
//! endpoint). An endpoint whose connection cannot be made is set aside for a backoff, and
//! a request that had not been sent yet moves to another endpoint that reads what it
//! carries, so that a pod that went away costs only the calls that were on it.
//!
//! HTTP/2 requests (all gRPC) go over HTTP/2 with prior knowledge, driven
//! with the h2 crate directly ([`h2_client`]); HTTP/1.x requests are forwarded as HTTP/1.1
//! through hyper's pooled client, each new connection to an endpoint chosen the same way.
//! Connections are made to the endpoints only: the authority a client wrote travels on
//! unchanged (`:authority`, `Host`) but never picks a connection, so distinct authorities
//! cannot multiply upstream connections. When the hop is TLS ([`dial`]), every
//! connection to an endpoint is TLS, and the certificate is checked for the configured
//! server name (by default the forward address's host), never for the endpoint's address.
//!
//! Each downstream connection has upstream HTTP/2 connections of its own, one to each
//! endpoint it has sent calls to, made when its first call there goes
//! ([`Upstream::with_own_connections`]), as each client would have without the sidecar.
//! Calls of different clients on one HTTP/2 connection share its flow-control window,
//! its stream limit and its peer's defences: one client that does not read its answers
//! would stall everyone's answers once the window is full, one whose calls the server
//! leaves hanging would take everyone's share of the server's stream limit, and resets
//! of one client's calls would count against all of them when the server closes the
//! connection for too many (hyper's and h2's servers say GOAWAY ENHANCE_YOUR_CALM). So
//! there are at most as many upstream HTTP/2 connections as downstream ones times
//! endpoints, bounded by the listener's connection limit and the DNS answer. What is
//! known of an endpoint (its load, whether it is set aside, whether it reads `bloscar`)
//! is shared by all downstream connections. The connections of a downstream connection
//! to an endpoint that left the DNS answer are let go: each closes once the calls on it
//! are done.

mod body;
mod dial;
mod endpoints;
mod h2_client;
mod replay;
mod resolve;
mod route;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tower_service::Service;

pub use self::body::{H2Body, UpstreamBody};
pub use self::dial::DialTls;
use self::dial::Dialer;
use self::endpoints::{Endpoint, Endpoints};
use self::h2_client::H2Client;
pub use self::resolve::{ResolveError, ResolveSettings};
pub use self::route::Route;
use self::route::{Chosen, Unrouted};
use super::headers::strip_hop_by_hop;
use crate::error::BoxError;
use crate::grpc::encoding::{BLOSCAR, GRPC_ENCODING};
use crate::layer::{BoxBody, UnknownPeer};
use crate::metrics::Metrics;
use crate::tls::{Alpn, HopStream};

/// How long a connection attempt to the upstream may take before the call is UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/1.1 requests in flight to the upstream at once. HTTP/1.1 carries one request
/// per connection at a time, so this caps the upstream connections that pass-through
/// traffic can open; requests beyond it wait for a slot.
const MAX_H1_IN_FLIGHT: usize = 256;

/// TCP keep-alive on upstream connections: a vanished peer is noticed after about
/// 60 s + 3 x 10 s of silence. TCP probes rather than HTTP/2 pings, because gRPC servers
/// (grpc-core) punish pings more often than every 5 minutes, or any ping without a call
/// in progress, with GOAWAY `too_many_pings`; TCP probes are invisible to them.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_RETRIES: u32 = 3;

/// Connects each new HTTP/1.1 connection to an endpoint of the upstream, whatever the
/// request's URI says.
#[derive(Clone)]
pub struct BalancedConnector {
    dialer: Dialer,
    endpoints: Arc<Endpoints>,
}

impl Service<Uri> for BalancedConnector {
    type Response = TokioIo<HopStream>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (dialer, endpoints) = (self.dialer.clone(), Arc::clone(&self.endpoints));
        Box::pin(async move {
            endpoints.ready(CONNECT_TIMEOUT).await;
            let endpoint = endpoints.pick(|_| true).ok_or(NoEndpoint)?;
            let dial = dialer.to(endpoint.target().clone());
            match dial.connect(Alpn::Http1).await {
                Ok(io) => {
                    endpoints.connected(&endpoint);
                    Ok(TokioIo::new(io))
                }
                Err(err) => {
                    endpoints.failed(&endpoint, &err);
                    Err(err)
                }
            }
        })
    }
}

/// The upstream's name has not resolved to any address (yet).
#[derive(Debug, thiserror::Error)]
#[error("the upstream's name has not resolved to any address")]
pub struct NoEndpoint;

/// Why an upstream cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The forward address is not `host:port`.
    #[error("invalid forward address: {0}")]
    Address(#[from] http::Error),
    /// Its name cannot be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// The HTTP/2 connections of one downstream connection: one per endpoint it has used.
struct Connections {
    dialer: Dialer,
    clients: Mutex<Clients>,
}

struct Clients {
    /// The endpoints' generation the map was last pruned at.
    generation: u64,
    by_addr: HashMap<SocketAddr, Arc<H2Client>>,
}

impl Connections {
    fn new(dialer: Dialer) -> Connections {
        Connections {
            dialer,
            clients: Mutex::new(Clients {
                generation: 0,
                by_addr: HashMap::new(),
            }),
        }
    }

    /// The client of `endpoint`. Clients of endpoints that left are dropped here: their
    /// connections close once the calls on them are done.
    fn client(&self, endpoints: &Endpoints, endpoint: &Endpoint) -> Arc<H2Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let generation = endpoints.generation();
        if clients.generation != generation {
            let current = endpoints.current();
            clients
                .by_addr
                .retain(|addr, _| current.iter().any(|e| e.addr() == *addr));
            clients.generation = generation;
        }
        let make = || Arc::new(H2Client::new(self.dialer.to(endpoint.target().clone())));
        if endpoint.is_removed() {
            // Chosen just before it left: this call only.
            return make();
        }
        Arc::clone(clients.by_addr.entry(endpoint.addr()).or_insert_with(make))
    }
}

/// The tower service that sends requests to the upstream and returns its responses.
#[derive(Clone)]
pub struct Upstream {
    dialer: Dialer,
    endpoints: Arc<Endpoints>,
    h2: Arc<Connections>,
    h1: Client<BalancedConnector, BoxBody>,
    h1_slots: Arc<Semaphore>,
    forward: Authority,
}

impl Upstream {
    /// A client for `forward` (`host:port`), whose name is resolved with `resolve`, over
    /// TLS with `tls`; an endpoint's capability is `unknown` until its first answer, and
    /// `listener` names the listener in the per-endpoint metrics kept in `metrics`. Must
    /// be called within a tokio runtime (a name is resolved by a task).
    pub fn new(
        forward: &str,
        listener: &'static str,
        unknown: UnknownPeer,
        resolve: ResolveSettings,
        tls: Option<DialTls>,
        metrics: Arc<Metrics>,
    ) -> Result<Upstream, UpstreamError> {
        let forward: Authority = forward.parse().map_err(http::Error::from)?;
        let endpoints = Arc::new(Endpoints::new(listener, unknown, metrics));
        resolve::start(
            forward.host(),
            forward.port_u16().unwrap_or(80),
            resolve,
            &endpoints,
        )?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(KEEP_ALIVE_IDLE));
        connector.set_keepalive_interval(Some(KEEP_ALIVE_INTERVAL));
        connector.set_keepalive_retries(Some(KEEP_ALIVE_RETRIES));
        let dialer = Dialer::new(connector, tls);
        Ok(Upstream {
            h2: Arc::new(Connections::new(dialer.clone())),
            h1: Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .build(BalancedConnector {
                    dialer: dialer.clone(),
                    endpoints: Arc::clone(&endpoints),
                }),
            dialer,
            endpoints,
            h1_slots: Arc::new(Semaphore::new(MAX_H1_IN_FLIGHT)),
            forward,
        })
    }

    /// A client to the same upstream with HTTP/2 connections of its own, for one
    /// downstream connection (see the module's documentation). HTTP/1.1 connections stay
    /// pooled over all downstream connections: each carries one request at a time, so
    /// clients share nothing on them but the pool, and the slots bound the requests in
    /// flight over all of them.
    pub fn with_own_connections(&self) -> Upstream {
        Upstream {
            h2: Arc::new(Connections::new(self.dialer.clone())),
            h1: self.h1.clone(),
            dialer: self.dialer.clone(),
            endpoints: Arc::clone(&self.endpoints),
            h1_slots: Arc::clone(&self.h1_slots),
            forward: self.forward.clone(),
        }
    }

    /// `inner` (the bloscar layer over this upstream) with an endpoint chosen for each
    /// request before it reaches the layer.
    pub fn route<S>(&self, inner: S) -> Route<S> {
        Route::new(inner, Arc::clone(&self.endpoints))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<Request<BoxBody>> for Upstream {
    type Response = Response<UpstreamBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<UpstreamBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BoxBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if parts.version == Version::HTTP_2 {
            // HTTP/2 carries the authority as :authority, from the URI: the client's, or
            // its Host header's when it gave none.
            let host = parts.headers.remove(header::HOST);
            let authority = parts.uri.authority().cloned().or_else(|| {
                host.as_ref()
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse().ok())
            });
            let authority = authority.unwrap_or_else(|| self.forward.clone());
            if let Err(err) = set_authority(&mut parts.uri, authority) {
                return Box::pin(async move { Err(err) });
            }
            let chosen = parts.extensions.remove::<Chosen>();
            let waited = parts.extensions.remove::<Unrouted>().is_some();
            let (h2, endpoints) = (Arc::clone(&self.h2), Arc::clone(&self.endpoints));
            return Box::pin(async move {
                let request = Request::from_parts(parts, body);
                let mut response = send_h2(&h2, &endpoints, chosen, waited, request).await?;
                strip_hop_by_hop(response.headers_mut());
                Ok(response.map(UpstreamBody::H2))
            });
        }
        // HTTP/1.1 names the authority in Host, which is kept as the client sent it; the
        // URI's authority is the upstream's, which is what hyper's pool is keyed by.
        parts.version = Version::HTTP_11;
        if let Err(err) = set_authority(&mut parts.uri, self.forward.clone()) {
            return Box::pin(async move { Err(err) });
        }
        let (h1, slots) = (self.h1.clone(), Arc::clone(&self.h1_slots));
        Box::pin(async move {
            let slot = slots.acquire_owned().await?;
            let mut response = h1.request(Request::from_parts(parts, body)).await?;
            strip_hop_by_hop(response.headers_mut());
            Ok(response.map(|body| UpstreamBody::H1(body, slot)))
        })
    }
}

/// Sends `request` to the endpoint chosen for it (or one chosen now), over the
/// downstream connection's own connection there. A request that could not be sent
/// because no connection to its endpoint could be made moves to another endpoint that
/// reads what the request carries (an encoded request only to an endpoint known to read
/// `bloscar`), once per endpoint.
async fn send_h2(
    h2: &Connections,
    endpoints: &Endpoints,
    chosen: Option<Chosen>,
    waited: bool,
    request: Request<BoxBody>,
) -> Result<Response<H2Body>, BoxError> {
    let load = match chosen {
        Some(chosen) => chosen.0,
        None => {
            if !waited {
                endpoints.ready(CONNECT_TIMEOUT).await;
            }
            Arc::new(endpoints.choose(|_| true).ok_or(NoEndpoint)?)
        }
    };
    let encoded = request
        .headers()
        .get(GRPC_ENCODING)
        .is_some_and(|v| v.as_bytes() == BLOSCAR.as_bytes());
    let (listener, metrics) = (endpoints.listener(), endpoints.metrics().upstream());
    // With one endpoint there is nowhere else to send a call again: nothing to keep.
    let (mut request, mut replay) = if endpoints.current().len() > 1 {
        let (request, replay) = replay::Replay::record(request);
        (request, Some(replay))
    } else {
        (request, None)
    };
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let endpoint = load.endpoint();
        let client = h2.client(endpoints, &endpoint);
        let err = match client.ready().await {
            Ok(send) => {
                endpoints.connected(&endpoint);
                metrics.record_request(listener, endpoint.name());
                match H2Client::send(send, request).await {
                    Ok(mut response) => {
                        if let Some(replay) = &replay {
                            replay.discard();
                        }
                        // The layer learns what the endpoint that answered reads.
                        response.extensions_mut().insert(endpoint.peer().clone());
                        return Ok(response);
                    }
                    Err(err) => {
                        metrics.record_error(listener, endpoint.name());
                        // Sent on a connection that broke before any answer: again,
                        // elsewhere, when the whole request is in hand.
                        let again = replay::connection_broke(&err)
                            .then(|| replay.as_mut().and_then(replay::Replay::again))
                            .flatten();
                        let Some(again) = again else {
                            return Err(err);
                        };
                        request = again;
                        err
                    }
                }
            }
            Err(err) => {
                metrics.record_error(listener, endpoint.name());
                err
            }
        };
        endpoints.failed(&endpoint, &err);
        tried.push(endpoint.addr());
        let next = endpoints.pick(|e| {
            !tried.contains(&e.addr()) && (!encoded || e.peer().capability.reads_bloscar())
        });
        match next {
            Some(next) => {
                tracing::debug!(from = %endpoint.addr(), to = %next.addr(), error = %err, "call moved to another upstream endpoint");
                load.move_to(next);
            }
            None => return Err(err),
        }
    }
}

/// `uri` made absolute with `authority`, over plain HTTP.
fn set_authority(uri: &mut Uri, authority: Authority) -> Result<(), BoxError> {
    let mut parts = std::mem::take(uri).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *uri = Uri::from_parts(parts)?;
    Ok(())
}
