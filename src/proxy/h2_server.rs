//! HTTP/2 connections served on h2 directly, each call run by the connection's own task.
//!
//! hyper's server spawns a task per stream and feeds the response from it, so every call
//! crosses between that task and the connection's: the request in, the response's head,
//! each DATA frame, its end. Here the connection's future polls its calls itself, as the
//! upstream client feeds a request from the call's task (`upstream/h2_client.rs`): the
//! frames a call queues leave in the same turn, and a small call costs no task and no
//! hand-over.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::{Builder, Connection, SendResponse};
use h2::{Ping, PingPong, Reason};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::limits;
use super::pump::BodyPump;
use super::upstream::H2Body;
use crate::layer::{BoxBody, Role};

/// How a served HTTP/2 connection ended, when not by a GOAWAY or the client's close.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectionEnd {
    /// The connection failed (I/O, or the client broke the protocol).
    #[error(transparent)]
    H2(#[from] h2::Error),
    /// The client did not answer a keep-alive PING in time: it is gone.
    #[error("no answer to a keep-alive PING within {0:?}")]
    KeepAliveTimeout(Duration),
}

/// The HTTP/2 server settings of a listener of `role`.
pub(super) fn builder(role: Role) -> Builder {
    let mut builder = Builder::new();
    builder
        .initial_window_size(super::STREAM_WINDOW)
        .initial_connection_window_size(super::CONNECTION_WINDOW)
        .max_frame_size(super::MAX_FRAME)
        .max_send_buffer_size(super::SEND_BUFFER)
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(limits::max_pending_accept_reset_streams(role))
        .max_local_error_reset_streams(Some(limits::MAX_LOCAL_ERROR_RESET_STREAMS))
        .max_header_list_size(limits::MAX_HEADER_LIST_SIZE);
    builder
}

/// One HTTP/2 connection with the calls it carries; a future that ends with the
/// connection.
pub(super) struct H2Connection<T, S> {
    conn: Connection<T, Bytes>,
    service: S,
    calls: FuturesUnordered<BoxFuture<'static, ()>>,
    keep_alive: KeepAlive,
}

impl<T, S> H2Connection<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// Completes the HTTP/2 handshake on `io` and serves its calls with `service`.
    pub(super) async fn handshake(io: T, builder: &Builder, service: S) -> Result<Self, h2::Error> {
        let mut conn = builder.handshake(io).await?;
        let keep_alive = KeepAlive::new(conn.ping_pong());
        Ok(H2Connection {
            conn,
            service,
            calls: FuturesUnordered::new(),
            keep_alive,
        })
    }

    /// Sends GOAWAY: no new calls; the connection ends once the open ones have.
    pub(super) fn graceful_shutdown(&mut self) {
        self.conn.graceful_shutdown();
    }
}

impl<T, S> Future for H2Connection<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<H2Body>, Response = Response<BoxBody>, Error = Infallible> + Unpin,
    S::Future: Send + 'static,
{
    type Output = Result<(), ConnectionEnd>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(end) = this.keep_alive.poll(cx) {
            return Poll::Ready(Err(end));
        }
        loop {
            // The calls first: what they hand to h2 leaves with the connection's writes
            // below, in this turn.
            while let Poll::Ready(Some(())) = this.calls.poll_next_unpin(cx) {}
            if this.service.poll_ready(cx).is_pending() {
                // No new calls until the service takes them; the open ones go on.
                return this.conn.poll_closed(cx).map_err(|e| e.into());
            }
            match this.conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    let request = request.map(|recv| H2Body::new(recv, None));
                    let call = this.service.call(request);
                    this.calls.push(Box::pin(answer(call, respond)));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err.into())),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Runs one call and sends its response; a client that resets the stream first drops
/// the call (and with it the call's upstream stream).
async fn answer<F>(call: F, mut respond: SendResponse<Bytes>)
where
    F: Future<Output = Result<Response<BoxBody>, Infallible>>,
{
    let mut call = pin!(call);
    // The reset is looked at before the call on every poll: a client that opened and
    // reset the stream at once (rapid reset) is seen before the call reaches upstream.
    let response = poll_fn(|cx| {
        if let Poll::Ready(reason) = respond.poll_reset(cx) {
            return Poll::Ready(Err(reason));
        }
        call.as_mut().poll(cx).map(|Ok(response)| Ok(response))
    })
    .await;
    let response = match response {
        Ok(response) => response,
        Err(reason) => {
            tracing::trace!(
                reason = %reason.map_or_else(|e| e.to_string(), |r| r.to_string()),
                "client reset the stream before its answer"
            );
            return;
        }
    };
    // The upstream client has stripped hop-by-hop headers, which h2 would refuse.
    let (parts, body) = response.into_parts();
    let end = body.is_end_stream();
    let send = match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(send) => send,
        Err(err) => {
            tracing::debug!(error = %err, "response head not sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    if !end {
        let mut pump = BodyPump::new(body, send);
        poll_fn(|cx| pump.poll(cx)).await;
    }
}

/// Keep-alive PINGs: a client that stops answering them is gone, and its connection is
/// closed instead of holding its calls and its place within the limit.
struct KeepAlive {
    ping_pong: Option<PingPong>,
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
}

impl KeepAlive {
    fn new(ping_pong: Option<PingPong>) -> KeepAlive {
        KeepAlive {
            ping_pong,
            timer: Box::pin(tokio::time::sleep(limits::KEEP_ALIVE_INTERVAL)),
            awaiting_pong: false,
        }
    }

    /// `Ready` once the client has failed to answer in time.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ConnectionEnd> {
        let Some(ping_pong) = &mut self.ping_pong else {
            return Poll::Pending;
        };
        loop {
            if self.awaiting_pong {
                match ping_pong.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.awaiting_pong = false;
                        self.timer
                            .as_mut()
                            .reset(Instant::now() + limits::KEEP_ALIVE_INTERVAL);
                    }
                    // The connection itself has failed: its own poll reports why.
                    Poll::Ready(Err(_)) => {
                        self.ping_pong = None;
                        return Poll::Pending;
                    }
                    Poll::Pending => {}
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.awaiting_pong {
                return Poll::Ready(ConnectionEnd::KeepAliveTimeout(limits::KEEP_ALIVE_TIMEOUT));
            }
            if ping_pong.send_ping(Ping::opaque()).is_err() {
                self.ping_pong = None;
                return Poll::Pending;
            }
            self.awaiting_pong = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + limits::KEEP_ALIVE_TIMEOUT);
        }
    }
}
