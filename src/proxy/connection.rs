//! Marks every request of one downstream connection with the connection's share of the
//! memory budget, so that the layer can hold each connection to its share, and with the
//! client's address for the access log (hyper tells a service nothing about the
//! connection a request came on).

use std::net::SocketAddr;

use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use crate::budget::ConnectionShare;
use crate::layer::ClientAddr;

/// `inner`, serving one connection: each request carries `share` and the client's
/// address in its extensions.
#[derive(Clone)]
pub struct WithConnection<S> {
    inner: S,
    share: ConnectionShare,
    client: SocketAddr,
}

impl<S> WithConnection<S> {
    /// Wraps the service of one connection from `client`.
    pub fn new(inner: S, share: ConnectionShare, client: SocketAddr) -> Self {
        WithConnection {
            inner,
            share,
            client,
        }
    }
}

impl<S, B> Service<Request<B>> for WithConnection<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        request.extensions_mut().insert(self.share.clone());
        request.extensions_mut().insert(ClientAddr(self.client));
        self.inner.call(request)
    }
}
