//! A body that keeps something alive for as long as the body lives: a budget charge, a
//! call counted in flight.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::BoxBody;
use crate::error::BoxError;

/// `body`, with `kept` dropped only when the body is (once sent, or abandoned).
pub fn keeping<T: Send + 'static>(body: BoxBody, kept: T) -> BoxBody {
    BoxBody::new(Keeping {
        inner: body,
        _kept: kept,
    })
}

pin_project! {
    struct Keeping<T> {
        inner: BoxBody,
        _kept: T,
    }
}

impl<T> Body for Keeping<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(self.project().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
