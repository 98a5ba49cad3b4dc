//! The listener: accepts connections, serves HTTP/2 (and HTTP/1.1 for pass-through), and
//! drains gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_service::Service;

use super::ProxySettings;
use super::upstream::Upstream;
use crate::layer::{Bloscar, BloscarLayer, BoxBody};
use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::Metrics;

/// Every plain-HTTP call fails this way while the upstream is down: one line per call
/// would flood the log.
static UPSTREAM_FAILED: LogSite = LogSite::new("proxy_upstream_failed");

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// HTTP/2 pings on idle client connections.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The layer of one proxy listener.
fn layer(settings: &ProxySettings, metrics: Arc<Metrics>) -> BloscarLayer {
    BloscarLayer::new(settings.role, Arc::clone(&settings.codec))
        .max_message_bytes(settings.max_message_bytes)
        .unknown_peer(settings.unknown_peer)
        .stream_idle_timeout(settings.stream_idle_timeout)
        .peer_name(&settings.forward)
        .memory_budget(settings.memory.clone())
        .metrics(metrics)
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
    let upstream = Upstream::new(&settings.forward).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid forward address {:?}: {err}", settings.forward),
        )
    })?;
    let service = ProxyService {
        inner: layer(&settings, metrics).layer(upstream),
    };

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timer bounds how long an HTTP/1 client may take to send its headers, and drives
    // HTTP/2 keep-alive pings that notice clients that vanished.
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(super::STREAM_WINDOW)
        .initial_connection_window_size(super::CONNECTION_WINDOW)
        .max_frame_size(super::MAX_FRAME)
        .max_send_buf_size(super::SEND_BUFFER)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr()?;
    tracing::info!(%local, role = ?settings.role, forward = %settings.forward, "listening");

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%local, error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "TCP_NODELAY not set");
        }
        let connection = builder
            .serve_connection(
                TokioIo::new(super::coalesced(stream)),
                TowerToHyperService::new(super::WithConnection::new(
                    service.clone(),
                    settings.memory.connection(),
                )),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(%local, grace_secs = grace.as_secs_f64(), "draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(%local, "all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(%local, "grace period over; closing remaining connections"),
    }
    Ok(())
}

/// The listener's service: the bloscar layer over the upstream client. Failures that the
/// layer did not turn into a gRPC status are failures to reach the upstream for plain
/// HTTP, answered with 502 as any reverse proxy does.
#[derive(Clone)]
struct ProxyService {
    inner: Bloscar<Upstream>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<BoxBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The upstream client queues requests itself and never refuses readiness; a
        // failure would surface again from `call` and become a 502 there.
        Service::<Request<Incoming>>::poll_ready(&mut self.inner, cx).map(|_| Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            Ok(future.await.unwrap_or_else(|err| {
                warn_limited!(UPSTREAM_FAILED, error = %err, "upstream request failed");
                let mut response = Response::new(BoxBody::default());
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
            }))
        })
    }
}
