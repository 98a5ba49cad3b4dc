//! Chooses the upstream endpoint of each HTTP/2 request before the bloscar layer sees it,
//! so that the layer encodes by what that endpoint reads; the request counts in flight
//! there until its response body is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Version};
use tower_service::Service;

use super::CONNECT_TIMEOUT;
use super::endpoints::{Endpoints, InFlight};
use crate::layer::{BoxBody, keeping};

/// The endpoint chosen for a request, in its extensions, for the upstream.
#[derive(Clone)]
pub(super) struct Chosen(pub(super) Arc<InFlight>);

/// A request that found no endpoint after waiting for the first ones.
#[derive(Clone, Copy)]
pub(super) struct Unrouted;

/// `inner` with an endpoint chosen for each HTTP/2 request ([`super::Upstream::route`]).
/// HTTP/1.1 requests pass as they are: their connections choose the endpoint.
#[derive(Clone)]
pub struct Route<S> {
    inner: S,
    endpoints: Arc<Endpoints>,
}

impl<S> Route<S> {
    pub(super) fn new(inner: S, endpoints: Arc<Endpoints>) -> Route<S> {
        Route { inner, endpoints }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<Request<B>> for Route<S>
where
    S: Service<Request<B>, Response = Response<BoxBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<BoxBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service polled ready takes this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.version() != Version::HTTP_2 {
            return Box::pin(inner.call(request));
        }
        let endpoints = Arc::clone(&self.endpoints);
        Box::pin(async move {
            // Until the name first resolves there is nothing to choose from; a request
            // that still finds nothing is answered UNAVAILABLE by the upstream.
            if endpoints.current().is_empty() {
                endpoints.ready(CONNECT_TIMEOUT).await;
            }
            let Some(load) = endpoints.choose(|_| true).map(Arc::new) else {
                // Waited for already: the upstream answers UNAVAILABLE at once.
                request.extensions_mut().insert(Unrouted);
                return inner.call(request).await;
            };
            let extensions = request.extensions_mut();
            extensions.insert(load.endpoint().peer().clone());
            extensions.insert(Chosen(Arc::clone(&load)));
            let response = inner.call(request).await?;
            // The request counts in flight until its response body is done.
            Ok(response.map(|body| keeping(body, load)))
        })
    }
}
