//! Measuring the link from REST responses: a response the inbound held whole was sent
//! from memory as fast as the link took it, so the time the outbound waits for its bytes
//! is the link's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::codec::tune::link::{LinkSample, SampleKind};
use crate::error::BoxError;
use crate::layer::clock::{Clock, MIN_SAMPLE_BYTES};
use crate::layer::{BoxBody, Shared};

/// Response header from the inbound: the body was held whole and is sent from memory.
/// Apps never see it.
pub const HELD_HEADER: &str = "bloscar-held";

/// Marks a response the inbound held whole.
pub fn mark_held(headers: &mut HeaderMap) {
    headers.insert(HELD_HEADER, http::HeaderValue::from_static("1"));
}

/// Whether the inbound held the response whole; removes the mark.
pub fn take_held(headers: &mut HeaderMap) -> bool {
    headers.remove(HELD_HEADER).is_some()
}

/// A response body whose arrival is timed; at its end, a large enough one is a sample
/// of the link for the outbound's estimate.
pub struct Timed {
    inner: BoxBody,
    clock: Clock,
    shared: Arc<Shared>,
    recorded: bool,
}

impl Timed {
    /// Times `inner` for the layer's link estimate.
    pub fn new(inner: BoxBody, shared: Arc<Shared>) -> Self {
        Timed {
            inner,
            clock: Clock::default(),
            shared,
            recorded: false,
        }
    }

    fn record(&mut self) {
        if std::mem::replace(&mut self.recorded, true) || self.clock.bytes() < MIN_SAMPLE_BYTES {
            return;
        }
        let sample = LinkSample {
            bytes: self.clock.bytes() as u64,
            secs: self.clock.idle_time().as_secs_f64(),
            kind: SampleKind::Exact,
        };
        let now = Instant::now();
        if self.shared.link.record(sample, now) {
            let rate = self.shared.link.rate(now);
            self.shared.metrics.record_link(true, rate);
            tracing::debug!(
                peer = %self.shared.peer_name,
                bytes = sample.bytes,
                duration_ms = sample.secs * 1e3,
                estimate_mbps = rate.map(|r| r * 8e-6),
                "link measured from a REST response"
            );
        }
    }
}

impl Body for Timed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                this.clock.idle();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.clock.moved(data.len());
                }
                // A server that knows the length stops asking once it has it all.
                if this.inner.is_end_stream() {
                    this.record();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.record();
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        // What arrived before the body was dropped still shows the link's pace.
        self.record();
    }
}
