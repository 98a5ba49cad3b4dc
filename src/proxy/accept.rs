//! Accepting connections on a proxy listener within its connection limit.
//!
//! Beyond the limit a connection is accepted and closed at once rather than left in the
//! kernel's accept queue. Left there, it would look connected to the client, which sends
//! its preface and then waits for an answer until its own deadline; once the queue is
//! full, the kernel drops further SYNs silently and clients wait out SYN retransmissions
//! (1 s, 3 s, 7 s, ...). Closed at once, the client sees the connection end straight
//! away: a gRPC client reports UNAVAILABLE and can back off or try another endpoint, and
//! the queue holds no connections whose clients have long given up by the time there is
//! room. The cost is one descriptor for an instant, which the reserve left free by the
//! limit covers.
//!
//! Being at the limit, or failing to accept, is logged when it starts and when it ends,
//! not for every connection; the refused connections are counted in
//! `bloscar_connections_refused_total`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{ConnectionGuard, Metrics};

/// Pause after a failed accept before trying again: the failures that last (out of file
/// descriptors, out of memory) would otherwise spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One connection within the limit: dropping it frees its place and its count.
#[derive(Debug)]
pub(super) struct Admitted {
    _place: OwnedSemaphorePermit,
    _open: ConnectionGuard,
}

/// Accepts connections on one listener within its connection limit.
pub(super) struct Admission {
    listener: &'static str,
    local: SocketAddr,
    limit: usize,
    places: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    refused_in_a_row: u64,
    failed_in_a_row: u64,
}

impl Admission {
    /// Admission to `listener` (the role's name, for metrics and logs) at `local`, with
    /// at most `limit` connections open at once.
    pub(super) fn new(
        listener: &'static str,
        local: SocketAddr,
        limit: usize,
        metrics: Arc<Metrics>,
    ) -> Admission {
        Admission {
            listener,
            local,
            limit,
            places: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
            metrics,
            refused_in_a_row: 0,
            failed_in_a_row: 0,
        }
    }

    /// The next connection that fits within the limit; those that do not are closed on
    /// the way. Cancel-safe: nothing is lost when the future is dropped between accepts.
    pub(super) async fn accept(
        &mut self,
        listener: &TcpListener,
    ) -> (TcpStream, SocketAddr, Admitted) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    self.accept_failed(&err);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            self.accept_succeeded();
            match self.places.clone().try_acquire_owned() {
                Ok(place) => {
                    self.within_limit();
                    let open = self.metrics.connection_opened(self.listener);
                    return (
                        stream,
                        peer,
                        Admitted {
                            _place: place,
                            _open: open,
                        },
                    );
                }
                Err(_) => {
                    self.refuse(peer);
                    drop(stream);
                }
            }
        }
    }

    fn refuse(&mut self, peer: SocketAddr) {
        self.metrics.record_connection_refused(self.listener);
        if self.refused_in_a_row == 0 {
            tracing::warn!(
                role = self.listener,
                local = %self.local,
                limit = self.limit,
                "at the connection limit: closing new connections until some end \
                 (BLOSCAR_MAX_CONNECTIONS, and the open-file limit)"
            );
        } else {
            tracing::debug!(role = self.listener, client = %peer, "connection refused");
        }
        self.refused_in_a_row += 1;
    }

    fn within_limit(&mut self) {
        if self.refused_in_a_row > 0 {
            tracing::info!(
                role = self.listener,
                local = %self.local,
                refused = self.refused_in_a_row,
                "below the connection limit again"
            );
            self.refused_in_a_row = 0;
        }
    }

    fn accept_failed(&mut self, err: &std::io::Error) {
        if self.failed_in_a_row == 0 {
            tracing::warn!(
                role = self.listener,
                local = %self.local,
                error = %err,
                "accept failed; retrying (further failures are logged at debug level)"
            );
        } else {
            tracing::debug!(role = self.listener, error = %err, "accept failed");
        }
        self.failed_in_a_row += 1;
    }

    fn accept_succeeded(&mut self) {
        if self.failed_in_a_row > 0 {
            tracing::info!(
                role = self.listener,
                local = %self.local,
                failed = self.failed_in_a_row,
                "accepting again"
            );
            self.failed_in_a_row = 0;
        }
    }
}
