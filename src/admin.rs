//! The admin listener: `/live`, `/ready` and `/metrics` over HTTP/1.1.
//!
//! Kubernetes probes and Prometheus scrapes are plain HTTP/1.1 requests, so this listener
//! speaks only that, on its own port, apart from the gRPC traffic.
//!
//! It must answer `/live` while the proxy listeners are at their limits, so it has its own
//! accept loop and task, and descriptors of its own: the proxy listeners' connection
//! limit leaves [`crate::proxy::RESERVED_DESCRIPTORS`] of the open-file limit free, of
//! which this listener takes at most [`MAX_CONNECTIONS`], so a flood of its own port
//! cannot take the proxies' descriptors either.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::exposition;

/// Slow or idle probe clients must not hold connections open for ever: a connection
/// that has not sent a request's headers within this time (the first one, or the next
/// one on a kept-alive connection) is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most admin connections open at once; beyond it a new connection is closed at once.
/// Probes and scrapes each use one connection at a time, so a handful is plenty; the
/// bound keeps the admin port within its share of the reserved descriptors.
pub const MAX_CONNECTIONS: usize = 16;

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where the process is in its life, as `/ready` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Listeners are not all bound yet.
    Starting,
    /// Every listener is bound and serving.
    Ready,
    /// Shutting down: no new connections, in-flight streams finishing.
    Draining,
}

/// The process's readiness, shared by the run loop (which moves it forward) and the
/// admin listener (which reports it).
#[derive(Debug)]
pub struct Health {
    state: AtomicU8,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// A process that is starting.
    pub fn new() -> Health {
        Health {
            state: AtomicU8::new(Readiness::Starting as u8),
        }
    }

    /// The current state.
    pub fn readiness(&self) -> Readiness {
        match self.state.load(Ordering::Acquire) {
            0 => Readiness::Starting,
            1 => Readiness::Ready,
            _ => Readiness::Draining,
        }
    }

    /// Every listener is bound: `/ready` answers 200 from now on (unless draining).
    pub fn set_ready(&self) {
        // A process that has begun draining never becomes ready again.
        let _ = self.state.compare_exchange(
            Readiness::Starting as u8,
            Readiness::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Shutdown has begun: `/ready` answers 503 from now on.
    pub fn set_draining(&self) {
        self.state
            .store(Readiness::Draining as u8, Ordering::Release);
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves; `/metrics` answers
/// with what `render_metrics` returns (the sidecar's `Metrics::render`, OpenMetrics text):
/// as it is to a scraper whose `Accept` asks for OpenMetrics, in the text format 0.0.4
/// otherwise.
///
/// Connections already open when `shutdown` resolves are left to finish on their own;
/// the process exits soon after anyway.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    render_metrics: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let render_metrics = Arc::new(render_metrics);
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failed_in_a_row = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Per-connection failures (e.g. a reset before accept, or running out
                    // of file descriptors for a moment) must not end the listener; a
                    // lasting failure is logged once, not every 50 ms.
                    if failed_in_a_row == 0 {
                        tracing::warn!(error = %e, "admin listener: accept failed; retrying");
                    } else {
                        tracing::debug!(error = %e, "admin listener: accept failed");
                    }
                    failed_in_a_row += 1;
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if failed_in_a_row > 0 {
            tracing::info!(failed = failed_in_a_row, "admin listener: accepting again");
            failed_in_a_row = 0;
        }
        let Ok(place) = places.clone().try_acquire_owned() else {
            // Closed at once, so that the client knows and the descriptor is free again.
            tracing::debug!(client = %peer, "admin listener: at its connection limit; closing");
            continue;
        };
        let health = health.clone();
        let render_metrics = render_metrics.clone();
        tokio::spawn(async move {
            let _place = place;
            let service = service_fn(move |req| {
                let response = respond(&req, &health, &*render_metrics);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(client = %peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// The response to one admin request.
fn respond(
    req: &Request<Incoming>,
    health: &Health,
    render_metrics: &dyn Fn() -> String,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/live" | "/ready" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /live, /ready or /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => match health.readiness() {
            Readiness::Ready => text(StatusCode::OK, "ready\n"),
            Readiness::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Readiness::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
        _ => {
            let openmetrics = req
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(exposition::wants_openmetrics);
            let text = render_metrics();
            let (body, content_type) = if openmetrics {
                (text, exposition::OPENMETRICS)
            } else {
                (exposition::to_text_004(&text), exposition::TEXT_004)
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            response
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_forward_only() {
        let health = Health::new();
        assert_eq!(health.readiness(), Readiness::Starting);
        health.set_ready();
        assert_eq!(health.readiness(), Readiness::Ready);
        health.set_draining();
        assert_eq!(health.readiness(), Readiness::Draining);
        health.set_ready();
        assert_eq!(health.readiness(), Readiness::Draining);
    }
}
