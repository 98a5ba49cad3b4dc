//! The optional per-call access log: one line per gRPC call at debug level, target
//! `bloscar::access` (turned on with e.g. `BLOSCAR_LOG=info,bloscar::access=debug`),
//! with the role, the client's address, the forward address, the method, the model, the gRPC
//! status, the body bytes received from the client and sent back to it, and the time
//! from the request's head to the call's end.
//!
//! Nothing is measured unless the line is enabled when the call starts: a call then
//! gets a small tally, and its two bodies count their bytes into it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::Role;

/// The address of the client a request came from, as a request extension: the proxy
/// adds it per downstream connection, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// What the access line of one call reports, gathered while the call runs.
#[derive(Debug)]
pub(super) struct Access {
    started: Instant,
    role: Role,
    client: Option<SocketAddr>,
    forward: Arc<str>,
    request_bytes: Arc<AtomicU64>,
    response_bytes: Arc<AtomicU64>,
}

impl Access {
    /// A tally for a call starting now, or `None` when the access log is off.
    pub(super) fn start(
        role: Role,
        client: Option<SocketAddr>,
        forward: &Arc<str>,
    ) -> Option<Self> {
        tracing::enabled!(target: "bloscar::access", tracing::Level::DEBUG).then(|| Access {
            started: Instant::now(),
            role,
            client,
            forward: Arc::clone(forward),
            request_bytes: Arc::default(),
            response_bytes: Arc::default(),
        })
    }

    /// `body`, the response as the client gets it, counting its bytes.
    pub(super) fn response<B>(&self, body: B) -> Tally<B> {
        Tally {
            inner: body,
            bytes: Some(Arc::clone(&self.response_bytes)),
        }
    }

    /// Logs the call's line: it ended with `status` (a
    /// [`Code::label`](crate::grpc::status::Code::label)).
    pub(super) fn log(&self, method: &str, model: Option<&str>, status: &str) {
        tracing::debug!(
            target: "bloscar::access",
            role = %self.role,
            client = self.client.map(tracing::field::display),
            forward = &*self.forward,
            method,
            model = model.unwrap_or(""),
            status,
            request_bytes = self.request_bytes.load(Ordering::Relaxed),
            response_bytes = self.response_bytes.load(Ordering::Relaxed),
            duration_ms = self.started.elapsed().as_micros() as f64 / 1000.0,
            "call"
        );
    }
}

pin_project! {
    /// A body passed on as it is, its data bytes added to a shared count (if any).
    pub(super) struct Tally<B> {
        #[pin]
        inner: B,
        bytes: Option<Arc<AtomicU64>>,
    }
}

impl<B> Tally<B> {
    /// `body`, the request as the client sent it, counting its bytes for `access`; with
    /// the access log off, only passed on.
    pub(super) fn request(access: Option<&Access>, body: B) -> Self {
        Tally {
            inner: body,
            bytes: access.map(|a| Arc::clone(&a.request_bytes)),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Tally<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(bytes), Some(Ok(frame))) = (this.bytes.as_ref(), &frame)
            && let Some(data) = frame.data_ref()
        {
            bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
