//! Small request bodies kept while they are sent, so that a call whose upstream
//! connection broke before any answer can be sent again to another endpoint.
//!
//! An endpoint that dies (its pod killed, its process gone) takes the connection with
//! it. The calls sent on that connection before the outbound has read its end fail
//! with a broken pipe or a reset although no server saw them, and so do the calls the
//! endpoint had begun and not answered. Each is sent once more, to another endpoint,
//! when its whole request is in hand: bodies up to [`REPLAY_LIMIT`] are recorded as
//! they pass (the frames are shared, not copied). A call the dead endpoint had begun
//! may so run twice; an inference is a function of its inputs, and the answer the
//! client gets is still one a server made. Larger requests, and calls whose answer had
//! begun, fail as before.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;
use crate::layer::BoxBody;

/// Largest request body kept for a second attempt: a unary call's request, or the first
/// messages of a stream, but never what a bulk upload would make the process hold.
pub(super) const REPLAY_LIMIT: usize = 64 << 10;

/// A frame of a recorded body.
#[derive(Clone)]
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// What is known of a recorded body.
enum State {
    /// Frames so far, all kept.
    Recording,
    /// The whole body, kept.
    Complete,
    /// Too long, failed, or no longer wanted: nothing kept.
    Lost,
}

struct Tape {
    state: State,
    frames: Vec<Kept>,
    bytes: usize,
}

/// What a second attempt of a request needs: its head (the extensions are the layer's,
/// not sent) and its body as recorded while it is sent.
pub(super) struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    recording: Recording,
}

impl Replay {
    /// `request`, with its body recorded while it passes.
    pub(super) fn record(request: Request<BoxBody>) -> (Request<BoxBody>, Replay) {
        let (parts, body) = request.into_parts();
        let (body, recording) = record(body);
        let replay = Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            recording,
        };
        (Request::from_parts(parts, body), replay)
    }

    /// The request again, recorded again, if its body was kept whole.
    pub(super) fn again(&mut self) -> Option<Request<BoxBody>> {
        let (body, recording) = record(self.recording.replay()?);
        self.recording = recording;
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        Some(request)
    }

    /// Lets go of what is kept: the call no longer needs a second attempt.
    pub(super) fn discard(&self) {
        self.recording.discard();
    }
}

/// The record of a body that [`Recorded`] passes on.
#[derive(Clone)]
struct Recording(Arc<Mutex<Tape>>);

impl Recording {
    fn lock(&self) -> MutexGuard<'_, Tape> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole body again, if it was kept whole.
    fn replay(&self) -> Option<BoxBody> {
        let tape = self.lock();
        matches!(tape.state, State::Complete).then(|| {
            BoxBody::new(Replayed {
                frames: tape.frames.iter().cloned().collect(),
            })
        })
    }

    /// Lets go of what is kept.
    fn discard(&self) {
        let mut tape = self.lock();
        tape.state = State::Lost;
        tape.frames = Vec::new();
    }
}

/// `body`, recorded while it passes.
fn record(body: BoxBody) -> (BoxBody, Recording) {
    let state = if body.is_end_stream() {
        State::Complete
    } else {
        State::Recording
    };
    let recording = Recording(Arc::new(Mutex::new(Tape {
        state,
        frames: Vec::new(),
        bytes: 0,
    })));
    let recorded = Recorded {
        inner: body,
        recording: recording.clone(),
    };
    (BoxBody::new(recorded), recording)
}

/// A body that keeps what passes through it in its [`Recording`].
struct Recorded {
    inner: BoxBody,
    recording: Recording,
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let mut tape = this.recording.lock();
        if matches!(tape.state, State::Recording) {
            match &frame {
                Some(Ok(frame)) => {
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    if tape.bytes + len > REPLAY_LIMIT {
                        tape.state = State::Lost;
                        tape.frames = Vec::new();
                    } else if let Some(data) = frame.data_ref() {
                        tape.bytes += len;
                        tape.frames.push(Kept::Data(data.clone()));
                    } else if let Some(trailers) = frame.trailers_ref() {
                        tape.frames.push(Kept::Trailers(trailers.clone()));
                    }
                }
                Some(Err(_)) => {
                    tape.state = State::Lost;
                    tape.frames = Vec::new();
                }
                None => tape.state = State::Complete,
            }
        }
        drop(tape);
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A recorded body, sent again.
struct Replayed {
    frames: VecDeque<Kept>,
}

impl Body for Replayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front().map(|kept| {
            Ok(match kept {
                Kept::Data(data) => Frame::data(data),
                Kept::Trailers(trailers) => Frame::trailers(trailers),
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Whether a call that failed with `err` before any answer may be sent again elsewhere:
/// its connection broke, or the server refused the stream unprocessed.
pub(super) fn connection_broke(err: &BoxError) -> bool {
    err.downcast_ref::<h2::Error>().is_some_and(|e| {
        e.is_io() || e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM)
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn boxed<B>(body: B) -> BoxBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        BoxBody::new(body.map_err(Into::into))
    }

    #[tokio::test]
    async fn a_whole_small_body_is_replayed_exactly() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"first "))),
            Ok(Frame::data(Bytes::from_static(b"second"))),
            Ok(Frame::trailers(HeaderMap::new())),
        ];
        let body = boxed(StreamBody::new(futures_util::stream::iter(frames)));
        let (recorded, recording) = record(body);
        assert!(recording.replay().is_none(), "not yet read whole");
        let first = recorded.collect().await.unwrap();
        let again = recording.replay().unwrap().collect().await.unwrap();
        assert!(again.trailers().is_some());
        assert_eq!(first.to_bytes(), again.to_bytes());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_not_kept() {
        let body = boxed(Full::new(Bytes::from(vec![1u8; REPLAY_LIMIT + 1])));
        let (recorded, recording) = record(body);
        recorded.collect().await.unwrap();
        assert!(recording.replay().is_none());
    }

    #[tokio::test]
    async fn an_empty_body_replays_empty_and_a_discarded_one_not_at_all() {
        let (_, recording) = record(BoxBody::default());
        let again = recording.replay().unwrap().collect().await.unwrap();
        assert!(again.to_bytes().is_empty());
        recording.discard();
        assert!(recording.replay().is_none());
    }
}
