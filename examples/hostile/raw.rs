//! gRPC over raw HTTP/2 (the h2 crate), for attackers that do what no gRPC library lets
//! a client do: stop sending half way, never read, reset at once, vary `:authority`,
//! send containers of their own making.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, Request};
use prost::Message;
use tokio::task::JoinHandle;

/// The KServe v2 unary method every attacker calls.
pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A raw HTTP/2 client connection: where streams are opened, and its driver.
pub struct Connection {
    /// Opens streams.
    pub send: SendRequest<Bytes>,
    /// Drives the connection; ends with the connection (its error says why).
    pub driver: JoinHandle<Result<(), h2::Error>>,
}

impl Connection {
    /// Connects to `addr` granting the peer `window` bytes per stream and
    /// `connection_window` per connection.
    pub async fn open(
        addr: SocketAddr,
        window: u32,
        connection_window: u32,
    ) -> Result<Connection, String> {
        let socket = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = socket.set_nodelay(true);
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(connection_window)
            .max_frame_size(1 << 20)
            .handshake::<_, Bytes>(socket)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(Connection {
            send,
            driver: tokio::spawn(connection),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A gRPC request head to `path` with `:authority` `authority` and extra `headers`.
pub fn head(authority: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::post(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("a valid request head")
}

/// One gRPC message frame: compressed flag, length, payload.
pub fn frame(compressed: bool, payload: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len()).expect("a gRPC message is below 4 GiB");
    let mut buf = BytesMut::with_capacity(5 + payload.len());
    buf.put_u8(u8::from(compressed));
    buf.put_u32(len);
    buf.put_slice(payload);
    buf.freeze()
}

/// `message` encoded as one uncompressed gRPC frame.
pub fn message_frame(message: &impl Message) -> Bytes {
    frame(false, &message.encode_to_vec())
}

/// The `grpc-status` of a response: from its head (trailers-only) or its trailers.
pub fn grpc_status(head: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<u32> {
    head.get("grpc-status")
        .or_else(|| trailers?.get("grpc-status"))
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// The name of a gRPC status code.
pub fn status_name(code: Option<u32>) -> &'static str {
    match code {
        Some(0) => "OK",
        Some(1) => "CANCELLED",
        Some(2) => "UNKNOWN",
        Some(3) => "INVALID_ARGUMENT",
        Some(4) => "DEADLINE_EXCEEDED",
        Some(5) => "NOT_FOUND",
        Some(8) => "RESOURCE_EXHAUSTED",
        Some(12) => "UNIMPLEMENTED",
        Some(13) => "INTERNAL",
        Some(14) => "UNAVAILABLE",
        Some(15) => "DATA_LOSS",
        Some(_) => "other status",
        None => "no grpc-status",
    }
}

/// What a call got back: the grpc-status and the whole body.
pub struct Answer {
    /// `grpc-status`, None if there was none.
    pub status: Option<u32>,
    /// `grpc-message`, if any.
    pub message: Option<String>,
    /// The response body (gRPC frames as received).
    pub body: Bytes,
}

/// Sends `body` as a whole request on `send` and reads the whole answer.
pub async fn call(
    send: &SendRequest<Bytes>,
    head: Request<()>,
    body: Bytes,
) -> Result<Answer, String> {
    let mut send = send
        .clone()
        .ready()
        .await
        .map_err(|e| format!("ready: {e}"))?;
    let (response, mut stream) = send
        .send_request(head, false)
        .map_err(|e| format!("send request: {e}"))?;
    stream
        .send_data(body, true)
        .map_err(|e| format!("send data: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let (parts, mut recv) = response.into_parts();
    let mut received = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| format!("response body: {e}"))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    let trailers = recv
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?;
    let message = parts
        .headers
        .get("grpc-message")
        .or_else(|| trailers.as_ref()?.get("grpc-message"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Answer {
        status: grpc_status(&parts.headers, trailers.as_ref()),
        message,
        body: received.freeze(),
    })
}
