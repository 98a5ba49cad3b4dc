//! gRPC framing by hand and a raw HTTP/2 client, for tests that send what no gRPC
//! library would: forged containers, cut streams, lying prefixes.

use std::net::SocketAddr;

use bloscar::grpc::Status;
use bytes::Bytes;
use http::Request;
use tokio::net::TcpStream;

use super::server::MODEL_INFER;

/// A gRPC message with its 5-byte prefix.
pub fn framed(compressed: bool, data: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Sends one gRPC request over a raw HTTP/2 connection: `body` as sent, then END_STREAM.
/// Returns the call's status (from a trailers-only response or from the trailers).
pub async fn raw_h2_call(addr: SocketAddr, encoding: Option<&str>, body: Vec<u8>) -> Status {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut request = Request::post(format!("http://{addr}{MODEL_INFER}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    send.send_data(Bytes::from(body), true).unwrap();
    let response = response.await.unwrap();
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    Status::from_header_map(&trailers).expect("grpc-status in trailers")
}

/// Opens a gRPC call to `path` over a new raw HTTP/2 connection with `headers` added,
/// sends `body`, and ends the request only when `end` (else it stays open, as a client
/// stream that has more to send). Returns the pending response and the request's stream.
pub async fn raw_h2_open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    end: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut request = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    send.send_data(Bytes::copy_from_slice(body), end).unwrap();
    (response, send)
}

/// How a raw call ended: its response headers, the message bytes received, and the
/// status (trailers-only or trailers), or the reset that ended the stream instead.
pub struct RawOutcome {
    pub headers: http::HeaderMap,
    /// Whether the response was trailers-only (the headers ended the stream).
    pub trailers_only: bool,
    pub data: Vec<u8>,
    pub ended: Result<Status, h2::Reason>,
}

/// Reads a raw call's response to its end.
pub async fn raw_h2_finish(response: h2::client::ResponseFuture) -> RawOutcome {
    let response = match response.await {
        Ok(response) => response,
        Err(err) => {
            return RawOutcome {
                headers: http::HeaderMap::new(),
                trailers_only: false,
                data: Vec::new(),
                ended: Err(err.reason().expect("a reset, not a connection failure")),
            };
        }
    };
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let trailers_only = body.is_end_stream();
    if let Some(status) = Status::from_header_map(&headers) {
        return RawOutcome {
            headers,
            trailers_only,
            data: Vec::new(),
            ended: Ok(status),
        };
    }
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            Err(err) => {
                let reason = err.reason().expect("a reset, not a connection failure");
                return RawOutcome {
                    headers,
                    trailers_only,
                    data,
                    ended: Err(reason),
                };
            }
        }
    }
    let ended =
        match body.trailers().await {
            Ok(trailers) => Ok(Status::from_header_map(&trailers.expect("trailers"))
                .expect("grpc-status in trailers")),
            Err(err) => Err(err.reason().expect("a reset, not a connection failure")),
        };
    RawOutcome {
        headers,
        trailers_only,
        data,
        ended,
    }
}
