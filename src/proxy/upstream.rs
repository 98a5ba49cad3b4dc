//! The upstream client: pooled connections to the one address a listener forwards to.
//!
//! HTTP/2 requests (all gRPC) go over HTTP/2 with prior knowledge; HTTP/1.x requests are
//! forwarded as HTTP/1.1. The request's authority is kept, whatever the upstream address.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::headers::strip_hop_by_hop;
use crate::error::BoxError;
use crate::layer::BoxBody;

/// How long a connection attempt to the upstream may take before the call is UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on idle upstream connections, so that a vanished peer is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects every request to one configured address, whatever its URI says.
#[derive(Clone)]
pub struct FixedConnector {
    inner: HttpConnector,
    target: Uri,
}

impl Service<Uri> for FixedConnector {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = <HttpConnector as Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        self.inner.call(self.target.clone())
    }
}

/// The tower service that sends requests to the upstream and returns its responses.
#[derive(Clone)]
pub struct Upstream {
    h2: Client<FixedConnector, BoxBody>,
    h1: Client<FixedConnector, BoxBody>,
    forward: Authority,
}

impl Upstream {
    /// A client for `forward` (`host:port`).
    pub fn new(forward: &str) -> Result<Upstream, http::Error> {
        let forward: Authority = forward.parse()?;
        let target = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(forward.clone())
            .path_and_query("/")
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = FixedConnector {
            inner: connector,
            target,
        };
        let h2 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_initial_stream_window_size(super::STREAM_WINDOW)
            .http2_initial_connection_window_size(super::CONNECTION_WINDOW)
            .http2_max_frame_size(super::MAX_FRAME)
            .http2_max_send_buf_size(super::SEND_BUFFER)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .build(connector.clone());
        let h1 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream { h2, h1, forward })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<Request<BoxBody>> for Upstream {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Incoming>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BoxBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let authority = parts
            .uri
            .authority()
            .cloned()
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse().ok())
            })
            .unwrap_or_else(|| self.forward.clone());
        let mut uri = parts.uri.into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(err) => return Box::pin(async move { Err(BoxError::from(err)) }),
        };
        let client = if parts.version == Version::HTTP_2 {
            // In HTTP/2 the authority travels as :authority.
            parts.headers.remove(header::HOST);
            self.h2.clone()
        } else {
            parts.version = Version::HTTP_11;
            self.h1.clone()
        };
        let future = client.request(Request::from_parts(parts, body));
        Box::pin(async move {
            let mut response = future.await?;
            strip_hop_by_hop(response.headers_mut());
            Ok(response)
        })
    }
}
