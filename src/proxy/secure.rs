//! TLS on the hop, at the proxy: the handshake of a connection a TLS listener accepted,
//! and what both sides log and count about handshakes and certificate reloads.

use std::net::SocketAddr;
use std::pin::pin;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsStream;

use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::{ConnectionTimeout, Metrics};
use crate::tls::failure::{classify, tls_error};
use crate::tls::reload::Reload;
use crate::tls::{HopStream, ServerTls};

/// One line per refused handshake: a misconfigured peer retries without end, and a
/// scanner opens thousands.
static HANDSHAKE_FAILED: LogSite = LogSite::new("tls_handshake_failed");

/// The TLS handshake of `stream` from `peer`, to be done by `deadline` (the listener's
/// handshake timeout, which the HTTP opening shares). `None` when it failed or timed
/// out, which is logged and counted here; the connection is closed only after that.
pub(super) async fn accept(
    stream: TcpStream,
    tls: &ServerTls,
    peer: SocketAddr,
    listener: &'static str,
    metrics: &Metrics,
    deadline: Instant,
) -> Option<HopStream> {
    let (acceptor, reload) = tls.acceptor();
    reloaded(reload, listener, metrics, || tls.paths());
    let mut handshake = pin!(acceptor.accept(stream));
    tokio::select! {
        result = &mut handshake => match result {
            Ok(stream) => Some(HopStream::from(TlsStream::Server(stream))),
            Err(err) => {
                failed(&err, Some(peer), listener, metrics);
                None
            }
        },
        () = tokio::time::sleep_until(deadline) => {
            metrics.record_connection_timeout(listener, ConnectionTimeout::Handshake);
            tracing::debug!(client = %peer, "TLS handshake not done in time: closing");
            None
        }
    }
}

/// Logs and counts a failed handshake of `listener` (with `peer`, the client, when it
/// accepted the connection). A connection that merely ended during the handshake (a
/// TCP health check, a client giving up) is not a TLS failure: logged at debug level.
pub(super) fn failed(
    err: &std::io::Error,
    peer: Option<SocketAddr>,
    listener: &'static str,
    metrics: &Metrics,
) {
    match tls_error(err) {
        Some(tls) => {
            let reason = classify(tls);
            metrics.record_tls_handshake_failure(listener, reason);
            warn_limited!(
                HANDSHAKE_FAILED,
                role = listener,
                client = peer.map(tracing::field::display),
                reason = reason.label(),
                error = %tls,
                "TLS handshake failed"
            );
        }
        None => {
            tracing::debug!(
                role = listener,
                client = peer.map(tracing::field::display),
                error = %err,
                "connection ended during the TLS handshake"
            );
        }
    }
}

/// Logs and counts what a look at `listener`'s TLS files found.
pub(super) fn reloaded(
    reload: Reload,
    listener: &'static str,
    metrics: &Metrics,
    paths: impl FnOnce() -> Vec<String>,
) {
    match reload {
        Reload::Unchanged => {}
        Reload::Reloaded => {
            metrics.record_tls_reload(listener, true);
            tracing::info!(
                role = listener,
                files = ?paths(),
                "TLS files changed: new handshakes use them"
            );
        }
        Reload::Refused(error) => {
            metrics.record_tls_reload(listener, false);
            tracing::warn!(
                role = listener,
                variable = error.variable(),
                error = %error,
                "TLS files changed but cannot be used: keeping the previous ones"
            );
        }
    }
}
