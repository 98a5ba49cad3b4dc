//! The upstream's response body: an HTTP/2 stream (which also carries on sending the
//! request while it is read) or a hyper HTTP/1 body.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::RecvStream;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::BoxError;
use crate::proxy::pump::BodyPump;

/// A response body from the upstream.
pub enum UpstreamBody {
    /// From the HTTP/2 client.
    H2(H2Body),
    /// From the HTTP/1 client, holding one of the upstream's HTTP/1 connection slots
    /// until the body is done.
    H1(Incoming, OwnedSemaphorePermit),
}

/// The body an HTTP/2 stream receives: a response from the upstream, with the rest of its
/// request when the request had not been sent whole before the response began (streaming
/// calls), or a request from a downstream client (`h2_server`).
pub struct H2Body {
    recv: RecvStream,
    pump: Option<BodyPump>,
    data_done: bool,
    finished: bool,
}

impl H2Body {
    pub(in crate::proxy) fn new(recv: RecvStream, pump: Option<BodyPump>) -> H2Body {
        H2Body {
            recv,
            pump,
            data_done: false,
            finished: false,
        }
    }

    fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let trailers: Result<Option<HeaderMap>, h2::Error> = ready!(self.recv.poll_trailers(cx));
        self.finished = true;
        // The response is complete: whatever of the request is left, the upstream no
        // longer wants.
        self.pump = None;
        Poll::Ready(match trailers {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(err) => Some(Err(err.into())),
        })
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(pump) = &mut this.pump
            && pump.poll(cx).is_ready()
        {
            this.pump = None;
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Window is given back as the data is taken: the reader's pace is
                    // the upstream's back-pressure.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => this.data_done = true,
            }
        }
        this.poll_trailers(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::H2(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::H1(body, _) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H2(body) => body.is_end_stream(),
            UpstreamBody::H1(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H2(body) => body.size_hint(),
            UpstreamBody::H1(body, _) => body.size_hint(),
        }
    }
}
