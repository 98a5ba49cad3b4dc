//! A client that declares `content-length` (hyper does for bodies of known size) through
//! both sidecars: the encoded and decoded messages have other lengths, so the sidecars
//! must drop the header rather than forward a length the body no longer has.

mod common;

use bytes::{Bytes, BytesMut};
use common::server::{MODEL_INFER, kserve_echo};
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

fn frame(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.len() + 5);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_content_length_are_encoded_and_answered() {
    let pair = Pair::start().await;
    let request = kserve_request(smooth_f32(64 * 1024));
    let body = frame(&request.encode_to_vec());
    let stream = tokio::net::TcpStream::connect(pair.outbound.addr)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    // The first call teaches the outbound that its peer reads bloscar; the second is
    // encoded, and so is its response.
    for _ in 0..2 {
        let req = Request::post(format!("http://{}{MODEL_INFER}", pair.outbound.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("content-length", body.len())
            .body(Full::new(body.clone()))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..]),
            "{trailers:?}"
        );
        let bytes = collected.to_bytes();
        assert_eq!(bytes, frame(&kserve_echo(&request).encode_to_vec()));
    }
    let (up, _) = pair.relay.counts();
    assert!(
        up < 2 * body.len() as u64,
        "the second request crossed the link encoded: {up}"
    );
}
