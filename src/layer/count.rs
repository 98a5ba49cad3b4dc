//! Counts the gRPC messages of a body the sidecar passes on untouched, so that
//! `bloscar_messages_total{outcome="passed"}` covers every message, including those of
//! methods the sidecar does not know.
//!
//! A request passed on unread still names its model (e.g. the first calls of an
//! outbound that does not know yet whether its peer reads bloscar): the model fields
//! come first in every protocol bloscar knows, so the first bytes of an identity request
//! are walked for it, and the call's metrics carry the model as encoded calls do.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::locate::{Direction, Locator, StreamWalk};
use crate::metrics::{Metrics, Outcome};
use crate::stream_encoder::{ModelSlot, model_key};

/// A gRPC message starts with a 5-byte prefix: a compressed flag and a big-endian length.
const PREFIX_LEN: usize = 5;

/// Bytes of a request looked at for its model before giving up (as the decoder does).
const MODEL_SNIFF_BYTES: usize = 64 * 1024;

/// What [`Framing::feed`] finds in the bytes it is given.
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    /// A message's prefix: its compressed flag and payload length.
    Start { compressed: bool, len: usize },
    /// The next bytes of the current message's payload.
    Payload(&'a [u8]),
    /// The current message is complete; its payload length.
    Done(usize),
}

/// Where the count is in the stream of length-prefixed messages.
#[derive(Debug, Default)]
struct Framing {
    /// Prefix bytes of the next message seen so far.
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Bytes of the current message's payload still to come.
    remaining: usize,
    /// Length of the current message's payload.
    len: usize,
}

impl Framing {
    /// Walks `data`, telling `on` each message start, payload piece and end in order.
    fn feed<'a>(&mut self, mut data: &'a [u8], mut on: impl FnMut(Event<'a>)) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                on(Event::Payload(&data[..take]));
                data.advance(take);
                if self.remaining == 0 {
                    on(Event::Done(self.len));
                }
                continue;
            }
            let take = (PREFIX_LEN - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data.advance(take);
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.prefix[1..]);
                self.len = u32::from_be_bytes(len) as usize;
                self.remaining = self.len;
                on(Event::Start {
                    compressed: self.prefix[0] & 1 == 1,
                    len: self.len,
                });
                if self.len == 0 {
                    on(Event::Done(0));
                }
            }
        }
    }
}

pin_project! {
    /// A body passed on as it is, whose messages are counted as `passed`.
    pub struct CountBody<B> {
        #[pin]
        inner: B,
        framing: Framing,
        metrics: Arc<Metrics>,
        direction: Direction,
        method: Arc<str>,
        model: ModelSlot,
        // The locator, while the model may still be learned from a request.
        locator: Option<Locator>,
        sniff: Option<Sniff>,
    }
}

/// A walk over the first bytes of one identity request, for the model it names.
struct Sniff {
    walk: StreamWalk,
    fed: usize,
}

impl Sniff {
    /// Feeds payload bytes; true once the walk is over (model found or given up).
    fn feed(&mut self, bytes: &[u8], model: &ModelSlot) -> bool {
        let take = bytes.len().min(MODEL_SNIFF_BYTES - self.fed);
        // The spans are not needed; only what the walk learns of the model.
        let mut spans = Vec::new();
        self.walk.feed(&bytes[..take], &mut spans);
        self.fed += take;
        if let Some(found) = self.walk.model() {
            let _ = model.set(model_key(found));
            return true;
        }
        self.fed >= MODEL_SNIFF_BYTES || self.walk.is_done() || self.walk.is_malformed()
    }
}

impl<B> CountBody<B> {
    /// Counts the messages of `inner`, a body going `direction` in a call of `method`;
    /// a request of a method `locator` knows is walked for its model, unless `model`
    /// is known already.
    pub fn new(
        inner: B,
        metrics: Arc<Metrics>,
        direction: Direction,
        method: Arc<str>,
        model: ModelSlot,
        locator: &Locator,
    ) -> Self {
        let locator = (direction == Direction::Request
            && model.get().is_none()
            && locator.stream(&method, direction, 0).is_some())
        .then(|| locator.clone());
        CountBody {
            inner,
            framing: Framing::default(),
            metrics,
            direction,
            method,
            model,
            locator,
            sniff: None,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for CountBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let (metrics, direction, method, model) = (
                &**this.metrics,
                *this.direction,
                &**this.method,
                &*this.model,
            );
            let (locator, sniff) = (this.locator, this.sniff);
            this.framing.feed(data, |event| match event {
                Event::Start { compressed, len } => {
                    // A compressed message (gzip, ...) cannot be walked as it is.
                    *sniff = match (&*locator, compressed, model.get()) {
                        (Some(locator), false, None) => locator
                            .stream(method, direction, len)
                            .map(|walk| Sniff { walk, fed: 0 }),
                        _ => None,
                    };
                }
                Event::Payload(bytes) => {
                    if let Some(s) = sniff.as_mut()
                        && s.feed(bytes, model)
                    {
                        *sniff = None;
                        if model.get().is_some() {
                            *locator = None;
                        }
                    }
                }
                Event::Done(len) => {
                    *sniff = None;
                    metrics.record_message(
                        direction,
                        Outcome::Passed,
                        method,
                        model.get().map(String::as_str),
                        len,
                        len,
                        Duration::ZERO,
                    );
                }
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere_are_counted_once() {
        let mut stream = vec![0, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0];
        stream.extend_from_slice(&[1, 0, 0, 1, 0]);
        stream.extend(std::iter::repeat_n(7u8, 256));
        for cut in 0..stream.len() {
            let mut framing = Framing::default();
            let mut done = Vec::new();
            let mut payload = 0;
            let mut starts = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                framing.feed(piece, |event| match event {
                    Event::Start { compressed, len } => starts.push((compressed, len)),
                    Event::Payload(bytes) => payload += bytes.len(),
                    Event::Done(len) => done.push(len),
                });
            }
            assert_eq!(done, vec![3, 0, 256], "cut at {cut}");
            assert_eq!(starts, vec![(false, 3), (false, 0), (true, 256)]);
            assert_eq!(payload, 259);
        }
    }
}
