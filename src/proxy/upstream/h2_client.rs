//! The HTTP/2 client: one connection to one endpoint of the upstream, made when first
//! needed and made again when it fails, whatever `:authority` the calls carry.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::body::H2Body;
use super::dial::Dial;
use crate::error::BoxError;
use crate::layer::BoxBody;
use crate::proxy::pump::BodyPump;
use crate::tls::Alpn;
use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, Response};
use http_body::Body;

/// A live connection: where new streams go, and whether its driver has ended.
#[derive(Clone)]
struct Live {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Live {
    fn usable(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }
}

/// Sends calls over one HTTP/2 connection to `target`.
pub(super) struct H2Client {
    dial: Dial,
    live: Mutex<Option<Live>>,
    /// One connection attempt at a time: calls that arrive meanwhile wait for it.
    connecting: tokio::sync::Mutex<()>,
}

impl H2Client {
    pub(super) fn new(dial: Dial) -> H2Client {
        H2Client {
            dial,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<Live> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref().filter(|live| live.usable()).cloned()
    }

    /// Forgets `stale` if it is still the current connection.
    fn discard(&self, stale: &Live) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.closed, &stale.closed))
        {
            *live = None;
        }
    }

    /// The current connection, or a new one.
    async fn connection(&self) -> Result<Live, BoxError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _turn = self.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let live = self.connect().await?;
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
        Ok(live)
    }

    async fn connect(&self) -> Result<Live, BoxError> {
        let io = self.dial.connect(Alpn::H2).await?;
        let (io, flusher) = super::super::turn_write::gathered(io);
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(super::super::STREAM_WINDOW)
            .initial_connection_window_size(super::super::CONNECTION_WINDOW)
            .max_frame_size(super::super::MAX_FRAME)
            .max_send_buffer_size(super::super::SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        let target = self.dial.target().clone();
        tokio::spawn(async move {
            match flusher.around(connection).await {
                Ok(()) => tracing::debug!(forward = %target, "upstream connection closed"),
                Err(err) => {
                    tracing::debug!(forward = %target, error = %err, "upstream connection failed")
                }
            }
            flag.store(true, Ordering::Release);
        });
        tracing::debug!(forward = %self.dial.target(), "upstream connection open");
        Ok(Live { send, closed })
    }

    /// A connection with room for one more stream. A connection that went away
    /// (GOAWAY, closed) says so here, before anything is sent, so the call moves to a
    /// fresh connection once.
    pub(super) async fn ready(&self) -> Result<SendRequest<Bytes>, BoxError> {
        let live = self.connection().await?;
        match live.send.clone().ready().await {
            Ok(send) => Ok(send),
            Err(err) => {
                tracing::debug!(error = %err, "upstream connection unusable; reconnecting");
                self.discard(&live);
                Ok(self.connection().await?.send.ready().await?)
            }
        }
    }

    /// Sends `request` on `send` (from [`H2Client::ready`]) and returns the response once
    /// its head has arrived. The request body is fed from this future and then from the
    /// response body.
    pub(super) async fn send(
        mut send: SendRequest<Bytes>,
        request: Request<BoxBody>,
    ) -> Result<Response<H2Body>, BoxError> {
        let (parts, body) = request.into_parts();
        let end = body.is_end_stream();
        let head = Request::from_parts(parts, ());
        let (response, send) = send.send_request(head, end)?;
        let mut pump = (!end).then(|| BodyPump::new(body, send));
        let mut response = pin!(response);
        // A unary server answers only once it has the whole request: send it meanwhile.
        let head = poll_fn(|cx| {
            if let Some(p) = &mut pump {
                let _ = p.poll(cx);
            }
            response.as_mut().poll(cx)
        })
        .await?;
        let pump = pump.filter(|p| !p.is_done());
        Ok(head.map(|recv| H2Body::new(recv, pump)))
    }
}
