//! The upstream client: connections to the one address a listener forwards to.
//!
//! HTTP/2 requests (all gRPC) go over HTTP/2 with prior knowledge, driven
//! with the h2 crate directly ([`h2_client`]); HTTP/1.x requests are forwarded as HTTP/1.1
//! through hyper's pooled client. Connections are made to the configured address only:
//! the authority a client wrote travels on unchanged (`:authority`, `Host`) but never
//! picks a connection, so distinct authorities cannot multiply upstream connections.
//!
//! Each downstream connection has an upstream HTTP/2 connection of its own
//! ([`Upstream::with_own_connections`]), as each client would have without the sidecar.
//! Calls of different clients on one HTTP/2 connection share its flow-control window,
//! its stream limit and its peer's defences: one client that does not read its answers
//! would stall everyone's answers once the window is full, one whose calls the server
//! leaves hanging would take everyone's share of the server's stream limit, and resets
//! of one client's calls would count against all of them when the server closes the
//! connection for too many (hyper's and h2's servers say GOAWAY ENHANCE_YOUR_CALM). So
//! there are as many upstream HTTP/2 connections as downstream ones, bounded by the
//! listener's connection limit.

mod body;
mod dial;
mod h2_client;
mod pump;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;
use tower_service::Service;

pub use self::body::{H2Body, UpstreamBody};
pub use self::dial::DialTls;
use self::dial::{Dial, FixedConnector};
use self::h2_client::H2Client;
use super::headers::strip_hop_by_hop;
use crate::error::BoxError;
use crate::layer::BoxBody;

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

/// The tower service that sends requests to the upstream and returns its responses.
#[derive(Clone)]
pub struct Upstream {
    dial: Dial,
    h2: Arc<H2Client>,
    h1: Client<FixedConnector, BoxBody>,
    h1_slots: Arc<Semaphore>,
    forward: Authority,
}

impl Upstream {
    /// A client for `forward` (`host:port`), over TLS with `tls`.
    pub fn new(forward: &str, tls: Option<DialTls>) -> Result<Upstream, http::Error> {
        let forward: Authority = forward.parse()?;
        let target = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(forward.clone())
            .path_and_query("/")
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(KEEP_ALIVE_IDLE));
        connector.set_keepalive_interval(Some(KEEP_ALIVE_INTERVAL));
        connector.set_keepalive_retries(Some(KEEP_ALIVE_RETRIES));
        let dial = Dial::new(connector, target, tls);
        Ok(Upstream {
            h2: Arc::new(H2Client::new(dial.clone())),
            h1: Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .build(FixedConnector { dial: dial.clone() }),
            dial,
            h1_slots: Arc::new(Semaphore::new(MAX_H1_IN_FLIGHT)),
            forward,
        })
    }

    /// A client to the same upstream with an HTTP/2 connection of its own, for one
    /// downstream connection (see the module's documentation). HTTP/1.1 connections stay
    /// pooled over all downstream connections: each carries one request at a time, so
    /// clients share nothing on them but the pool, and the slots bound the requests in
    /// flight over all of them.
    pub fn with_own_connections(&self) -> Upstream {
        Upstream {
            h2: Arc::new(H2Client::new(self.dial.clone())),
            h1: self.h1.clone(),
            dial: self.dial.clone(),
            h1_slots: Arc::clone(&self.h1_slots),
            forward: self.forward.clone(),
        }
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
            let h2 = Arc::clone(&self.h2);
            return Box::pin(async move {
                let mut response = h2.call(Request::from_parts(parts, body)).await?;
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
