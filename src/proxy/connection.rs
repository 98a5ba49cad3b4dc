//! Marks every request of one downstream connection with the connection's share of the
//! memory budget, so that the layer can hold each connection to its share (hyper tells
//! a service nothing about the connection a request came on).

use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

use crate::budget::ConnectionShare;

/// `inner`, serving one connection: each request carries `share` in its extensions.
#[derive(Clone)]
pub struct WithConnection<S> {
    inner: S,
    share: ConnectionShare,
}

impl<S> WithConnection<S> {
    /// Wraps the service of one connection.
    pub fn new(inner: S, share: ConnectionShare) -> Self {
        WithConnection { inner, share }
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
        self.inner.call(request)
    }
}
