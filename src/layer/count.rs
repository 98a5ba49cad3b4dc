//! Counts the gRPC messages of a body the sidecar passes on untouched, so that
//! `bloscar_messages_total{outcome="passed"}` covers every message, including those of
//! methods the sidecar does not know.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::locate::Direction;
use crate::metrics::{Metrics, Outcome};
use crate::stream_encoder::ModelSlot;

/// A gRPC message starts with a 5-byte prefix: a compressed flag and a big-endian length.
const PREFIX_LEN: usize = 5;

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
    /// Walks `data`; returns the lengths of the messages it completes.
    fn feed(&mut self, mut data: &[u8], done: &mut Vec<usize>) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data.advance(take);
                if self.remaining == 0 {
                    done.push(self.len);
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
                if self.len == 0 {
                    done.push(0);
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
        done: Vec<usize>,
    }
}

impl<B> CountBody<B> {
    /// Counts the messages of `inner`, a body going `direction` in a call of `method`.
    pub fn new(
        inner: B,
        metrics: Arc<Metrics>,
        direction: Direction,
        method: Arc<str>,
        model: ModelSlot,
    ) -> Self {
        CountBody {
            inner,
            framing: Framing::default(),
            metrics,
            direction,
            method,
            model,
            done: Vec::new(),
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
            this.framing.feed(data, this.done);
            for len in this.done.drain(..) {
                this.metrics.record_message(
                    *this.direction,
                    Outcome::Passed,
                    this.method,
                    this.model.get().map(String::as_str),
                    len,
                    len,
                    Duration::ZERO,
                );
            }
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
            framing.feed(&stream[..cut], &mut done);
            framing.feed(&stream[cut..], &mut done);
            assert_eq!(done, vec![3, 0, 256], "cut at {cut}");
        }
    }
}
