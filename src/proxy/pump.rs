//! Moves a body into its HTTP/2 stream from the call's own task: a request into its
//! upstream stream, a response into the client's.
//!
//! hyper hands each body to a task of its own; here the call that waits for the response
//! (and then reads the response body) also feeds the request, and the task of a
//! downstream connection feeds its responses, so a small call costs no extra task and
//! its frames leave in one write.

use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::{Reason, SendStream};
use http_body::Body;

use crate::layer::BoxBody;

/// Bytes a stream may hand to h2 before h2 has granted it any window: the HTTP/2 initial
/// window. A new stream has no capacity until its connection task has sent the stream's
/// HEADERS; waiting for it would send a small message's HEADERS, DATA and end of stream in
/// three writes (and wake the peer three times) instead of one.
const UNGRANTED_ALLOWANCE: usize = 65_535;

/// A body on its way into its HTTP/2 stream.
pub(in crate::proxy) struct BodyPump {
    body: BoxBody,
    send: SendStream<Bytes>,
    /// What is left of [`UNGRANTED_ALLOWANCE`].
    allowance: usize,
    done: bool,
}

impl BodyPump {
    /// A pump from `body` into `send`.
    pub(in crate::proxy) fn new(body: BoxBody, send: SendStream<Bytes>) -> BodyPump {
        BodyPump {
            body,
            send,
            allowance: UNGRANTED_ALLOWANCE,
            done: false,
        }
    }

    /// Moves every frame that is ready now. `Ready` once the body has ended (its end
    /// handed to h2) or the upstream stream is gone; the pump is finished then.
    pub(in crate::proxy) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.done {
            // The peer may have reset the stream (an upstream that answered before
            // reading the whole request, a client that gave up): nothing more can be sent.
            if let Poll::Ready(reason) = self.send.poll_reset(cx) {
                tracing::debug!(
                    reason = %reason.map_or_else(|e| e.to_string(), |r| r.to_string()),
                    "stream reset while sending its body"
                );
                self.done = true;
                break;
            }
            // Take the next frame only when h2 has room for it, so the body is read as
            // fast as the upstream accepts it and no faster.
            self.send.reserve_capacity(1);
            if self.send.capacity() == 0 && self.allowance == 0 {
                match ready!(self.send.poll_capacity(cx)) {
                    Some(Ok(0)) => continue,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        self.done = true;
                        break;
                    }
                }
            }
            let frame = match ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => {
                    // The layer has recorded the call's status; the peer learns only that
                    // the body broke off.
                    tracing::debug!(error = %err, "body failed; resetting its stream");
                    self.send.send_reset(Reason::CANCEL);
                    self.done = true;
                    break;
                }
                None => {
                    let sent = self.send.send_data(Bytes::new(), true);
                    self.sent(true, sent);
                    break;
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    self.allowance = self.allowance.saturating_sub(data.len());
                    let end = self.body.is_end_stream();
                    if !data.is_empty() || end {
                        let sent = self.send.send_data(data, end);
                        self.sent(end, sent);
                    }
                    continue;
                }
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers() {
                let sent = self.send.send_trailers(trailers);
                self.sent(true, sent);
            }
        }
        Poll::Ready(())
    }

    /// Whether the whole body has been handed over (or can no longer be).
    pub(in crate::proxy) fn is_done(&self) -> bool {
        self.done
    }

    /// Records what handing a frame to h2 did: the pump is finished by the body's end
    /// or by a stream that can take nothing more.
    fn sent(&mut self, end: bool, sent: Result<(), h2::Error>) {
        if let Err(err) = &sent {
            tracing::debug!(error = %err, "stream closed while sending its body");
        }
        self.done |= end || sent.is_err();
    }
}
