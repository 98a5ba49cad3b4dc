//! Huge messages over raw HTTP/2 (the h2 crate), so that the benchmark process holds
//! one shared copy of each message however many streams carry it and the proxies'
//! memory is what the figures show.
//!
//! The request and its echo are encoded once, as gRPC frames. The client sends the
//! request frame (zero-copy slices of one buffer); the server compares what arrives with
//! that frame byte for byte as it streams in, then answers with the echo frame, which
//! the client compares as it streams in. Both proxies under test deliver messages
//! unchanged (the sidecars restore the exact bytes), so the comparison is exact.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use prost::Message;

use crate::tensors::{echo, infer_request};

/// Per-stream flow-control window the benchmark grants its peer.
const STREAM_WINDOW: u32 = 4 << 20;
/// Per-connection flow-control window the benchmark grants its peer.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 DATA frame the benchmark accepts.
const MAX_FRAME: u32 = 1 << 20;
const PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A ModelInfer request and its echo, each as one gRPC frame (flag, length, message).
pub struct BulkMessages {
    /// The request frame.
    pub request: Bytes,
    /// The echo server's answer frame.
    pub response: Bytes,
}

impl BulkMessages {
    /// The request carrying `tensor` and its echo.
    pub fn new(tensor: Vec<u8>) -> BulkMessages {
        let request = infer_request(tensor);
        let request_frame = frame(&request);
        let response_frame = frame(&echo(request));
        BulkMessages {
            request: request_frame,
            response: response_frame,
        }
    }
}

fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let len32 = u32::try_from(len).expect("a gRPC message is below 4 GiB");
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len32);
    message.encode(&mut buf).expect("capacity reserved");
    buf.freeze()
}

/// Compares the chunks of a body with `expected` as they arrive.
struct Comparer<'a> {
    expected: &'a [u8],
    offset: usize,
    equal: bool,
}

impl Comparer<'_> {
    fn feed(&mut self, chunk: &[u8]) {
        let end = self.offset + chunk.len();
        self.equal &= self.expected.get(self.offset..end) == Some(chunk);
        self.offset = end;
    }

    fn matched(&self) -> bool {
        self.equal && self.offset == self.expected.len()
    }
}

/// Reads a body to its end, comparing it with `expected`; whether it matched.
async fn read_compare(body: &mut h2::RecvStream, expected: &[u8]) -> Result<bool, h2::Error> {
    let mut comparer = Comparer {
        expected,
        offset: 0,
        equal: true,
    };
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        comparer.feed(&chunk);
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(comparer.matched())
}

fn grpc_status(code: u32) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code));
    trailers
}

/// Starts the server on a free loopback port: it answers every call on any connection
/// with `messages.response` when the request equals `messages.request`, and with
/// DATA_LOSS otherwise.
pub async fn start_server(messages: Arc<BulkMessages>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the bulk server");
    let addr = listener.local_addr().expect("bulk server address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            let messages = messages.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::Builder::new()
                    .initial_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .max_frame_size(MAX_FRAME)
                    .handshake(socket)
                    .await
                else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(answer(request, respond, messages.clone()));
                }
            });
        }
    });
    addr
}

async fn answer(
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    messages: Arc<BulkMessages>,
) {
    let mut body = request.into_body();
    let matched = read_compare(&mut body, &messages.request)
        .await
        .unwrap_or(false);
    let head = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a valid response head");
    if !matched {
        // 15: DATA_LOSS, trailers-only.
        let mut head = head;
        head.headers_mut().extend(grpc_status(15));
        let _ = respond.send_response(head, true);
        return;
    }
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    if send.send_data(messages.response.clone(), false).is_ok() {
        let _ = send.send_trailers(grpc_status(0));
    }
}

/// One unary call to `entry` on a new connection: Ok when the answer equals
/// `messages.response` bit for bit and ends with grpc-status 0.
pub async fn call(entry: SocketAddr, messages: &BulkMessages) -> Result<(), String> {
    let (client, driver) = connect(entry).await?;
    let result = exchange(client, entry, messages).await;
    driver.abort();
    result
}

/// One unary call to `entry` on the connection of `client`, checked as [`call`] does.
pub async fn call_on(
    client: h2::client::SendRequest<Bytes>,
    entry: SocketAddr,
    messages: &BulkMessages,
) -> Result<(), String> {
    exchange(client, entry, messages).await
}

/// A new HTTP/2 connection to `entry`, and the task that drives it.
pub async fn connect(
    entry: SocketAddr,
) -> Result<(h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>), String> {
    let socket = tokio::net::TcpStream::connect(entry)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .handshake::<_, Bytes>(socket)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

async fn exchange(
    client: h2::client::SendRequest<Bytes>,
    entry: SocketAddr,
    messages: &BulkMessages,
) -> Result<(), String> {
    let mut client = client.ready().await.map_err(|e| format!("ready: {e}"))?;
    let head = Request::post(format!("http://{entry}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request head");
    let (response, mut send) = client
        .send_request(head, false)
        .map_err(|e| format!("send request: {e}"))?;
    // Zero-copy: h2 queues slices of the shared frame until flow control lets them go.
    send.send_data(messages.request.clone(), true)
        .map_err(|e| format!("send data: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    if let Some(status) = response.headers().get("grpc-status") {
        return Err(format!("trailers-only answer, grpc-status {status:?}"));
    }
    let mut body = response.into_body();
    let matched = read_compare(&mut body, &messages.response)
        .await
        .map_err(|e| format!("response body: {e}"))?;
    let trailers = body
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?
        .unwrap_or_default();
    let status = trailers.get("grpc-status").and_then(|s| s.to_str().ok());
    match (matched, status) {
        (true, Some("0")) => Ok(()),
        (false, _) => Err("the echoed message differs from the one sent".into()),
        (true, other) => Err(format!("grpc-status {other:?}")),
    }
}
