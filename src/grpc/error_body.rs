//! A response body that ends a failing gRPC stream with `grpc-status` trailers instead of
//! a reset, so the client app learns what went wrong (a reset only where trailers would
//! cut a message: [`ResetStream`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::error_slot::ErrorSlot;
use super::status::{Code, Status};
use crate::error::BoxError;

pin_project! {
    /// Turns errors of the wrapped response body into gRPC trailers. A failure recorded in
    /// the call's [`ErrorSlot`] (by the request side) takes precedence over what the
    /// upstream reported, since the upstream's status is only a consequence of it.
    pub struct GrpcErrorBody<B, F> {
        #[pin]
        inner: B,
        slot: ErrorSlot,
        on_end: Option<F>,
        done: bool,
    }
}

impl<B, F: FnOnce(&Status)> GrpcErrorBody<B, F> {
    /// Wraps a gRPC response body; `on_end` learns the status the call ended with, from
    /// its trailers (OK when they carry none) or from its failure. It is not called for a
    /// body that ends without trailers or is dropped before its end.
    pub fn new(inner: B, slot: ErrorSlot, on_end: F) -> Self {
        GrpcErrorBody {
            inner,
            slot,
            on_end: Some(on_end),
            done: false,
        }
    }
}

impl<B, F> Body for GrpcErrorBody<B, F>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    F: FnOnce(&Status),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    *this.done = true;
                    let status = match this.slot.get() {
                        Some(status) => {
                            status.add_to(&mut trailers);
                            status
                        }
                        None => Status::from_header_map(&trailers)
                            .unwrap_or_else(|| Status::new(Code::Ok, "")),
                    };
                    if let Some(on_end) = this.on_end.take() {
                        on_end(&status);
                    }
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Some(Err(err)) => {
                *this.done = true;
                let err: BoxError = err.into();
                if let Some(ResetStream(status)) = err.downcast_ref::<ResetStream>() {
                    tracing::debug!(code = status.code.label(), message = %status.message, "gRPC response reset mid-message");
                    if let Some(on_end) = this.on_end.take() {
                        on_end(status);
                    }
                    // hyper resets the stream with the reason of an h2 error it is given.
                    return Poll::Ready(Some(Err(Box::new(h2::Error::from(h2::Reason::CANCEL)))));
                }
                let status = this.slot.get().unwrap_or_else(|| status_of(&*err));
                tracing::debug!(code = status.code.label(), message = %status.message, "gRPC response ended by an error");
                if let Some(on_end) = this.on_end.take() {
                    on_end(&status);
                }
                Poll::Ready(Some(Ok(Frame::trailers(status.to_header_map()))))
            }
            None => {
                *this.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A response body's error for a failure that came in the middle of a message: trailers
/// after a cut message break gRPC's framing (clients then report INTERNAL, or misread
/// the cut message), so [`GrpcErrorBody`] resets the stream with CANCEL instead, as a
/// client does to abandon a call. The status is still counted as the call's outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (in the middle of a message: the stream is reset)")]
pub struct ResetStream(pub Status);

/// The gRPC status for an error of a body or an upstream call: a [`Status`] as it is, an
/// HTTP/2 reset by its reason (as the gRPC HTTP/2 mapping says), anything else UNAVAILABLE.
pub fn status_of(err: &(dyn std::error::Error + 'static)) -> Status {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if let Some(status) = err.downcast_ref::<Status>() {
            return status.clone();
        }
        if let Some(reason) = err.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            let code = match reason {
                h2::Reason::CANCEL => Code::Cancelled,
                h2::Reason::REFUSED_STREAM => Code::Unavailable,
                h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
                h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
                _ => Code::Internal,
            };
            return Status::new(code, format!("upstream stream reset: {reason}"));
        }
        source = err.source();
    }
    Status::new(Code::Unavailable, format!("upstream failed: {err}"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    /// Runs a body that sends `b"abc"` and then fails with `err` through a
    /// [`GrpcErrorBody`]; returns its last frame (or error) and the status it reported.
    async fn end_with(err: BoxError) -> (Result<Frame<Bytes>, BoxError>, Option<Status>) {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Err(err)];
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let reported = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&reported);
        let mut body = GrpcErrorBody::new(inner, ErrorSlot::default(), move |s: &Status| {
            *sink.lock().unwrap() = Some(s.clone());
        });
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        let last = body.frame().await.unwrap();
        assert!(body.frame().await.is_none());
        let reported = reported.lock().unwrap().clone();
        (last, reported)
    }

    #[tokio::test]
    async fn a_failure_becomes_trailers() {
        let status = Status::new(Code::DataLoss, "bad");
        let (last, reported) = end_with(Box::new(status.clone())).await;
        let trailers = last.unwrap().into_trailers().unwrap();
        assert_eq!(Status::from_header_map(&trailers), Some(status.clone()));
        assert_eq!(reported, Some(status));
    }

    #[tokio::test]
    async fn a_failure_mid_message_resets_the_stream_with_cancel() {
        let status = Status::new(Code::DeadlineExceeded, "late");
        let (last, reported) = end_with(Box::new(ResetStream(status.clone()))).await;
        let err = last.unwrap_err();
        let reason = err.downcast_ref::<h2::Error>().and_then(h2::Error::reason);
        assert_eq!(reason, Some(h2::Reason::CANCEL));
        assert_eq!(reported, Some(status));
    }

    #[tokio::test]
    async fn the_upstream_status_is_reported_at_the_end() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![Ok(Frame::trailers(trailers))];
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let reported = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&reported);
        let mut body = GrpcErrorBody::new(inner, ErrorSlot::default(), move |s: &Status| {
            *sink.lock().unwrap() = Some(s.code);
        });
        assert!(body.frame().await.unwrap().unwrap().is_trailers());
        assert_eq!(*reported.lock().unwrap(), Some(Code::NotFound));
    }
}
