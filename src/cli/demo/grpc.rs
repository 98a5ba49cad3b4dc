//! gRPC over HTTP/2 at the hyper level for the demo: length-prefixed message framing, a
//! unary client, and the echo server of an identity model.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use super::kserve;

/// Largest message either side accepts.
const MAX_BODY: usize = 256 << 20;

/// Why a demo call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    #[error("response body: {0}")]
    Body(String),
    #[error("grpc-status {status}: {message}")]
    Status { status: String, message: String },
    #[error("malformed gRPC framing: {0}")]
    Framing(&'static str),
}

/// Prefixes `msg` with the gRPC message header (uncompressed flag, big-endian length).
pub fn frame(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.len() + 5);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out.freeze()
}

/// Splits a body into its messages; only uncompressed messages are accepted (both sides
/// of the demo, and every sidecar towards its app, speak identity).
pub fn unframe(mut body: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut msgs = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err("truncated message header");
        }
        if body[0] != 0 {
            return Err("compressed message where identity was expected");
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let rest = &body[5..];
        if rest.len() < len {
            return Err("truncated message");
        }
        msgs.push(&rest[..len]);
        body = &rest[len..];
    }
    Ok(msgs)
}

/// One HTTP/2 connection that makes unary gRPC calls.
pub struct Client {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Client {
    /// Connects to `addr` (prior-knowledge HTTP/2, as gRPC clients do).
    pub async fn connect(addr: SocketAddr) -> Result<Client, CallError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(conn);
        Ok(Client {
            sender,
            authority: addr.to_string(),
        })
    }

    /// Calls `method` with `msg` and returns the response message.
    pub async fn unary(&mut self, method: &str, msg: &[u8]) -> Result<Bytes, CallError> {
        let request = Request::post(format!("http://{}{}", self.authority, method))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(frame(msg)))
            .map_err(|e| CallError::Body(e.to_string()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let collected = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| CallError::Body(e.to_string()))?;
        // A trailers-only response carries its status in the headers.
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status_of = |h: &HeaderMap, name: &str| {
            h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let status = status_of(&trailers, "grpc-status")
            .or_else(|| status_of(&parts.headers, "grpc-status"));
        if status.as_deref() != Some("0") || parts.status != StatusCode::OK {
            return Err(CallError::Status {
                status: status.unwrap_or_else(|| format!("missing (HTTP {})", parts.status)),
                message: status_of(&trailers, "grpc-message")
                    .or_else(|| status_of(&parts.headers, "grpc-message"))
                    .unwrap_or_default(),
            });
        }
        let body = collected.to_bytes();
        let msgs = unframe(&body).map_err(CallError::Framing)?;
        match msgs.as_slice() {
            [one] => Ok(body.slice_ref(one)),
            _ => Err(CallError::Framing("a unary response must hold one message")),
        }
    }
}

type EchoBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Serves the identity model on `listener`: every ModelInfer request (gRPC) or REST
/// inference request (HTTP/1.1) comes back as the response carrying its inputs as outputs.
pub async fn serve_echo(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // HTTP/1.1 too: the model answers KServe v2 REST as well.
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(8 << 20)
                .max_frame_size(1 << 20);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(echo))
                .await;
        });
    }
}

fn grpc_response(data: Option<Bytes>, status: u32, message: &str) -> Response<EchoBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    if let Ok(v) = HeaderValue::from_str(message)
        && !message.is_empty()
    {
        trailers.insert("grpc-message", v);
    }
    let mut frames = Vec::new();
    if let Some(data) = data {
        frames.push(Ok(Frame::data(data)));
    }
    frames.push(Ok(Frame::trailers(trailers)));
    let mut response = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

async fn echo(request: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    if request.uri().path().starts_with("/v2/") {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let response = super::rest::respond(parts.uri.path(), &parts.headers, &body);
        return Ok(response
            .map(|body| StreamBody::new(futures_util::stream::iter(vec![Ok(Frame::data(body))]))));
    }
    if request.uri().path() != kserve::MODEL_INFER {
        return Ok(grpc_response(
            None,
            12,
            "the demo echo serves ModelInfer only",
        ));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(grpc_response(None, 8, &format!("request body: {e}"))),
    };
    let msgs = match unframe(&body) {
        Ok(msgs) if msgs.len() == 1 => msgs,
        Ok(_) => {
            return Ok(grpc_response(
                None,
                13,
                "a unary request must hold one message",
            ));
        }
        Err(e) => return Ok(grpc_response(None, 13, e)),
    };
    match kserve::echo_response(msgs[0]) {
        Ok(response) => Ok(grpc_response(Some(frame(&response)), 0, "")),
        Err(e) => Ok(grpc_response(
            None,
            3,
            &format!("malformed ModelInferRequest: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips() {
        let body = [frame(b"abc"), frame(b""), frame(&[7; 300])].concat();
        let msgs = unframe(&body).unwrap();
        assert_eq!(msgs, [&b"abc"[..], &b""[..], &[7u8; 300][..]]);
        assert!(unframe(&body[..body.len() - 1]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
    }

    #[tokio::test]
    async fn echo_answers_model_infer_and_rejects_other_methods() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_echo(listener));
        let mut client = Client::connect(addr).await.unwrap();
        let tensor = super::super::tensors::segmentation_mask(0.25);
        let request = kserve::infer_request("echo", "1", &tensor);
        let response = client.unary(kserve::MODEL_INFER, &request).await.unwrap();
        assert_eq!(response, kserve::echo_response(&request).unwrap());
        let err = client
            .unary("/other.Service/Method", &request)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::Status { ref status, .. } if status == "12"),
            "{err}"
        );
    }
}
