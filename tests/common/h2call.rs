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
