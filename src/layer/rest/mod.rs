//! KServe v2 / Open Inference Protocol over HTTP (REST): `POST
//! /v2/models/{name}[/versions/{version}]/infer`, over HTTP/1.1 or HTTP/2, on the same
//! listeners as gRPC.
//!
//! An inference body is held whole, within the layer's REST body limit, because its
//! JSON header must be read before its binary tensors can be found ([`layout`]). Between
//! the sidecars it travels as a bloscar container under `Content-Encoding: bloscar`
//! ([`negotiate`]): each binary tensor compressed with its element type's size, or a
//! JSON-only body compressed whole ([`encode`]); the receiving sidecar restores the exact
//! bytes, so the apps see the body, `Content-Length` and `Inference-Header-Content-Length`
//! they would have seen without sidecars. A body in the app's own coding (gzip,
//! deflate) passes as it is. Every other REST path never reaches this module.

mod encode;
mod error;
mod layout;
mod negotiate;
mod timed;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use self::error::{RestError, status_label};
use self::layout::Layout;
use self::negotiate::BodyCoding;
use super::pipeline::run_blocking;
use super::{BoxBody, Role, Shared, boxed, keeping, link};
use crate::budget::{Account, BudgetError, ConnectionShare};
use crate::error::BoxError;
use crate::locate::Direction;
use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::Outcome;

/// The default largest REST inference body held whole: 256 MiB.
pub(super) const DEFAULT_MAX_BODY: usize = 256 << 20;

/// The method label of REST inference calls in metrics and for the tuner: one label for
/// every model (the model has its own label), so REST adds one method series at most.
pub const REST_INFER: &str = "/v2/models/*/infer";

static REFUSED: LogSite = LogSite::new("rest_refused");

/// The model key (`name` or `name:version`) of a REST inference request; `None` for
/// every other request, which passes through untouched.
pub(super) fn infer_model<B>(request: &Request<B>) -> Option<String> {
    if request.method() != Method::POST || crate::grpc::is_grpc(request.headers()) {
        return None;
    }
    let rest = request.uri().path().strip_prefix("/v2/models/")?;
    let rest = rest.strip_suffix("/infer")?;
    let (name, version) = match rest.split_once("/versions/") {
        Some((name, version)) => (name, Some(version)),
        None => (rest, None),
    };
    let segment = |s: &str| !s.is_empty() && !s.contains('/');
    if !segment(name) || version.is_some_and(|v| !segment(v)) {
        return None;
    }
    Some(match version {
        Some(version) => format!("{name}:{version}"),
        None => name.to_owned(),
    })
}

/// Serves one REST inference call for the layer's role.
pub(super) fn call<S, B, RB>(
    shared: Arc<Shared>,
    inner: S,
    request: Request<B>,
    model: String,
) -> BoxFuture<'static, Result<Response<BoxBody>, BoxError>>
where
    S: Service<Request<BoxBody>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let mut inner = inner;
    let send: Forward = Box::new(move |request| {
        // A combinator rather than an async block: the upstream's future is a projection
        // of `S`, which an async block could not prove `Send` for every lifetime.
        Box::pin(inner.call(request).map(|result| {
            let response = result.map_err(Into::into)?;
            Ok(response.map(boxed))
        }))
    });
    let connection = request.extensions().get::<ConnectionShare>().cloned();
    let request = request.map(boxed);
    Box::pin(async move {
        let rest = Rest {
            shared,
            model,
            connection,
        };
        let response = match rest.shared.role {
            Role::Outbound => rest.outbound(send, request).await,
            Role::Inbound => rest.inbound(send, request).await,
        };
        rest.shared.metrics.record_call(
            REST_INFER,
            Some(&rest.model),
            status_label(response.status()),
        );
        Ok(response)
    })
}

/// Sends the request on to the upstream.
type Forward = Box<
    dyn FnOnce(Request<BoxBody>) -> BoxFuture<'static, Result<Response<BoxBody>, BoxError>>
        + std::marker::Send,
>;

/// One REST inference call.
struct Rest {
    shared: Arc<Shared>,
    model: String,
    /// The share of the downstream connection the call came on, if known.
    connection: Option<ConnectionShare>,
}

impl Rest {
    /// Outbound: advertises `bloscar`, encodes the request once the peer is known to
    /// read it, and restores a bloscar response.
    async fn outbound(&self, send: Forward, request: Request<BoxBody>) -> Response<BoxBody> {
        let (mut parts, body) = request.into_parts();
        let body = match negotiate::coding(&parts.headers) {
            BodyCoding::Identity => match self.encode_request(&mut parts.headers, body).await {
                Ok(body) => body,
                Err(err) => return self.refuse(err),
            },
            // The app's own coding passes as it is, and so does a bloscar body from a
            // client that writes containers itself.
            BodyCoding::App | BodyCoding::Bloscar => {
                self.record_passed(Direction::Request, &parts.headers);
                body
            }
        };
        negotiate::advertise(&mut parts.headers);
        // The inbound compresses responses for the same link; only a peer sidecar reads
        // the estimate.
        if self.shared.rest_peer.reads_bloscar()
            && let Some(value) = self
                .shared
                .link
                .rate(Instant::now())
                .and_then(link::rate_header)
        {
            parts.headers.insert(link::LINK_RATE_HEADER, value);
        }
        let response = match send(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(err) => return self.refuse(RestError::Upstream(err.to_string())),
        };
        let (mut parts, mut body) = response.into_parts();
        if timed::take_held(&mut parts.headers) {
            body = boxed(timed::Timed::new(body, Arc::clone(&self.shared)));
        }
        let reads = negotiate::take_advertisement(&mut parts.headers);
        if self.shared.rest_peer.learn(reads) {
            tracing::info!(
                role = %Role::Outbound,
                peer = &*self.shared.peer_name,
                reads_bloscar_rest = reads,
                "learned the peer's REST capability"
            );
        }
        if negotiate::coding(&parts.headers) != BodyCoding::Bloscar {
            self.record_passed(Direction::Response, &parts.headers);
            return Response::from_parts(parts, body);
        }
        match self
            .decode(&mut parts.headers, body, Direction::Response)
            .await
        {
            Ok(body) => Response::from_parts(parts, body),
            // What the peer sent cannot be restored: the client gets a clear error,
            // never wrong bytes.
            Err(err) => self.refuse_as(http::StatusCode::BAD_GATEWAY, err),
        }
    }

    /// Inbound: restores a bloscar request, and encodes the response when the request
    /// said the client side reads `bloscar`.
    async fn inbound(&self, send: Forward, request: Request<BoxBody>) -> Response<BoxBody> {
        let (mut parts, body) = request.into_parts();
        let reads = negotiate::take_advertisement(&mut parts.headers);
        let link_rate = link::take_rate(&mut parts.headers);
        let body = if negotiate::coding(&parts.headers) == BodyCoding::Bloscar {
            match self
                .decode(&mut parts.headers, body, Direction::Request)
                .await
            {
                Ok(body) => body,
                Err(err) => return self.refuse(err),
            }
        } else {
            self.record_passed(Direction::Request, &parts.headers);
            body
        };
        let response = match send(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(err) => return self.refuse(RestError::Upstream(err.to_string())),
        };
        let (mut parts, body) = response.into_parts();
        if !reads {
            self.record_passed(Direction::Response, &parts.headers);
            return Response::from_parts(parts, body);
        }
        negotiate::advertise(&mut parts.headers);
        if negotiate::coding(&parts.headers) != BodyCoding::Identity {
            self.record_passed(Direction::Response, &parts.headers);
            return Response::from_parts(parts, body);
        }
        match self
            .encode_response(&mut parts.headers, body, link_rate)
            .await
        {
            Ok(body) => Response::from_parts(parts, body),
            Err(err) => self.refuse_as(http::StatusCode::BAD_GATEWAY, err),
        }
    }

    /// The request body, whole, as a container when the peer reads one and it pays.
    async fn encode_request(
        &self,
        headers: &mut HeaderMap,
        body: BoxBody,
    ) -> Result<BoxBody, RestError> {
        let limit = self.shared.max_http_body_bytes;
        let mut account = self.account(Direction::Request);
        let data = match collect(body, limit, &mut account).await? {
            Collected::Whole(data) => data,
            Collected::Over { .. } => return Err(RestError::TooLarge { limit }),
        };
        let layout = layout::of_body(headers, Direction::Request, &data)?;
        let encode = self.shared.rest_peer.reads_bloscar();
        let body = self
            .maybe_encode(
                headers,
                data,
                layout,
                encode.then_some(None),
                Direction::Request,
            )
            .await;
        Ok(keeping(body, account))
    }

    /// The response body, as a container when it pays; a body over the limit, or one
    /// that does not hold what its header declares, passes as it is.
    async fn encode_response(
        &self,
        headers: &mut HeaderMap,
        body: BoxBody,
        link_rate: Option<f64>,
    ) -> Result<BoxBody, RestError> {
        let mut account = self.account(Direction::Response);
        let data = match collect(body, self.shared.max_http_body_bytes, &mut account).await? {
            Collected::Whole(data) => data,
            Collected::Over { prefix, rest } => {
                self.record_passed(Direction::Response, headers);
                return Ok(boxed(Prefixed {
                    prefix: Some(prefix),
                    rest,
                }));
            }
        };
        // Sent from memory: the outbound may time it as the link's pace.
        timed::mark_held(headers);
        let Ok(layout) = layout::of_body(headers, Direction::Response, &data) else {
            self.record(
                Direction::Response,
                Outcome::Passed,
                data.len(),
                data.len(),
                Duration::ZERO,
            );
            return Ok(keeping(full(data), account));
        };
        let body = self
            .maybe_encode(headers, data, layout, Some(link_rate), Direction::Response)
            .await;
        Ok(keeping(body, account))
    }

    /// `data` as a container when `encode` is given and it pays, with the headers to
    /// match. `encode` holds the link rate the outbound told the inbound, if any.
    async fn maybe_encode(
        &self,
        headers: &mut HeaderMap,
        data: Bytes,
        layout: Layout,
        encode: Option<Option<f64>>,
        direction: Direction,
    ) -> BoxBody {
        let started = Instant::now();
        let container = if let Some(told) = encode {
            let chooser = Arc::clone(self.shared.codec.chooser());
            let model = self.model.clone();
            let link = match self.shared.role {
                Role::Outbound => self.shared.link.rate(started),
                Role::Inbound => told,
            };
            let plain = data.clone();
            let job = move || {
                let context = encode::Context {
                    method: REST_INFER,
                    model: &model,
                    link_bytes_per_sec: link,
                };
                encode::encode(&*chooser, &context, &layout, &plain)
            };
            match run_blocking(&self.shared.jobs, job).await {
                Ok(Ok(container)) => container,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "REST body not encoded; it travels as it is");
                    None
                }
                Err(status) => {
                    tracing::debug!(error = %status.message, "REST body not encoded");
                    None
                }
            }
        } else {
            None
        };
        match container {
            Some(container) => {
                negotiate::set_bloscar(headers);
                set_length(headers, container.len());
                self.record(
                    direction,
                    Outcome::Encoded,
                    data.len(),
                    container.len(),
                    started.elapsed(),
                );
                full(Bytes::from(container))
            }
            None => {
                set_length(headers, data.len());
                self.record(
                    direction,
                    Outcome::Passed,
                    data.len(),
                    data.len(),
                    Duration::ZERO,
                );
                full(data)
            }
        }
    }

    /// A bloscar body restored, with the headers it had before it was encoded.
    async fn decode(
        &self,
        headers: &mut HeaderMap,
        body: BoxBody,
        direction: Direction,
    ) -> Result<BoxBody, RestError> {
        let limit = self.shared.max_http_body_bytes;
        let mut account = self.account(direction);
        let wire = match collect(body, limit, &mut account).await? {
            Collected::Whole(wire) => wire,
            Collected::Over { .. } => return Err(RestError::TooLarge { limit }),
        };
        let started = Instant::now();
        // A container may claim no more than a body the limit allows.
        let mut limits = *self.shared.codec.limits();
        limits.max_message_size = limits.max_message_size.min(limit);
        let counted = wire.clone();
        let plain = run_blocking(&self.shared.jobs, move || {
            crate::container::decode(&counted, &limits)
        })
        .await
        .map_err(|status| RestError::Internal(status.message.to_string()))?
        .map_err(|err| RestError::Decode(err.into()))?;
        // The restored body exists already (within the limit); it is held until sent.
        let need = wire.len() + plain.len();
        if need > account.limit() {
            return Err(BudgetError::TooLarge {
                need,
                limit: account.limit(),
            }
            .into());
        }
        account.reserve(need).await?;
        headers.remove(CONTENT_ENCODING);
        set_length(headers, plain.len());
        self.record(
            direction,
            Outcome::Decoded,
            plain.len(),
            wire.len(),
            started.elapsed(),
        );
        Ok(keeping(full(Bytes::from(plain)), account))
    }

    /// The call's account with the memory budget for a body of `direction`.
    fn account(&self, direction: Direction) -> Account {
        self.shared
            .memory
            .account(direction, self.connection.as_ref())
    }

    fn record(
        &self,
        direction: Direction,
        outcome: Outcome,
        identity_len: usize,
        wire_len: usize,
        elapsed: Duration,
    ) {
        self.shared.metrics.record_message(
            direction,
            outcome,
            REST_INFER,
            Some(&self.model),
            identity_len,
            wire_len,
            elapsed,
        );
    }

    /// Counts a body that streams through as it is, by its declared length.
    fn record_passed(&self, direction: Direction, headers: &HeaderMap) {
        let len = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.record(direction, Outcome::Passed, len, len, Duration::ZERO);
    }

    fn refuse(&self, err: RestError) -> Response<BoxBody> {
        let status = err.status();
        self.refuse_as(status, err)
    }

    fn refuse_as(&self, status: http::StatusCode, err: RestError) -> Response<BoxBody> {
        warn_limited!(
            REFUSED,
            role = %self.shared.role,
            model = %self.model,
            status = status.as_u16(),
            error = %err,
            "REST inference call refused"
        );
        let mut response = error::json_error(status, &err.to_string());
        if self.shared.role == Role::Inbound {
            negotiate::advertise(response.headers_mut());
        }
        response
    }
}

/// Sets the body's length for a body held whole.
fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

fn full(data: Bytes) -> BoxBody {
    Full::new(data)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body read up to a limit.
enum Collected {
    /// All of it.
    Whole(Bytes),
    /// More than the limit: what was read, and the rest still to read.
    Over { prefix: Bytes, rest: BoxBody },
}

/// Reads `body` whole if it is at most `limit` bytes, never holding more than `limit`
/// plus one frame, with twice what it holds reserved in `account` (the body, and what it
/// becomes). Trailers of a body held whole are dropped (REST bodies carry none).
async fn collect(
    mut body: BoxBody,
    limit: usize,
    account: &mut Account,
) -> Result<Collected, RestError> {
    if body.size_hint().lower() > limit as u64 {
        return Ok(Collected::Over {
            prefix: Bytes::new(),
            rest: body,
        });
    }
    let mut buf = BytesMut::with_capacity(body.size_hint().exact().unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| RestError::Body(err.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            buf.extend_from_slice(&data);
            return Ok(Collected::Over {
                prefix: buf.freeze(),
                rest: body,
            });
        }
        let need = 2 * (buf.len() + data.len());
        // Reserved step by step, each step small: a body that could never fit as a
        // whole must fail now rather than wait for permits that cannot come.
        if need > account.limit() {
            return Err(BudgetError::TooLarge {
                need,
                limit: account.limit(),
            }
            .into());
        }
        account.reserve(need).await?;
        buf.extend_from_slice(&data);
    }
    Ok(Collected::Whole(buf.freeze()))
}

/// The bytes already read of a body, then the rest of it.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: BoxBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take().filter(|p| !p.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty) && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + prefix);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(method: Method, path: &str) -> Option<String> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        infer_model(&request)
    }

    #[test]
    fn only_inference_posts_are_recognised() {
        assert_eq!(
            model(Method::POST, "/v2/models/resnet/infer").as_deref(),
            Some("resnet")
        );
        assert_eq!(
            model(Method::POST, "/v2/models/resnet/versions/3/infer").as_deref(),
            Some("resnet:3")
        );
        assert_eq!(model(Method::GET, "/v2/models/resnet/infer"), None);
        assert_eq!(model(Method::POST, "/v2/models/resnet"), None);
        assert_eq!(model(Method::POST, "/v2/models/resnet/ready"), None);
        assert_eq!(model(Method::POST, "/v2/models//infer"), None);
        assert_eq!(model(Method::POST, "/v2/models/a/b/infer"), None);
        assert_eq!(model(Method::POST, "/v2/repository/index"), None);
        assert_eq!(model(Method::POST, "/v2/models/m/versions//infer"), None);
    }
}
