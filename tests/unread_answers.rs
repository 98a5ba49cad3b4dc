//! A client that stops reading its answers holds up its own calls only: the sidecars
//! give every client connection upstream connections of its own, so its unread answers
//! fill flow-control windows that no other client's answers need.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::server::MODEL_INFER;
use common::{Pair, framed, kserve_request, smooth_f32, wait_until};
use http::Request;
use prost::Message;
use tokio::net::TcpStream;

/// Calls whose answers the greedy client never reads: 12 × 12 MiB of answers is far
/// more than an HTTP/2 connection's window between the sidecars (16 MiB).
const UNREAD_CALLS: usize = 12;
const TENSOR: usize = 12 << 20;

/// Bytes that no codec can shrink (xorshift), so that the answers cross the pair at
/// full size.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_answers_stalls_no_one_else() {
    let pair = Pair::start().await;

    // The greedy client: calls sent whole, answers never read (no window given back).
    let tcp = TcpStream::connect(pair.outbound.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = Bytes::from(framed(
        false,
        &kserve_request(incompressible(TENSOR)).encode_to_vec(),
    ));
    let mut unread = Vec::new();
    for _ in 0..UNREAD_CALLS {
        let mut client = client.clone().ready().await.unwrap();
        let head = Request::post(format!("http://{}{MODEL_INFER}", pair.outbound.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(head, false).unwrap();
        send.send_data(request.clone(), true).unwrap();
        unread.push((response, send));
    }
    // Every greedy call has reached the app, which has answered it.
    let recorder = &pair.server.recorder;
    wait_until(|| recorder.requests.lock().unwrap().len() == UNREAD_CALLS).await;

    // Another client's calls are answered, exactly, while those answers sit unread.
    let channel = pair.channel().await;
    for _ in 0..5 {
        let request = kserve_request(smooth_f32(64 * 1024)).encode_to_vec();
        let mut call = tonic::Request::new(Bytes::from(request.clone()));
        call.set_timeout(Duration::from_secs(20));
        let answer = common::raw_unary_request(channel.clone(), MODEL_INFER, call)
            .await
            .expect("the other client's call is answered");
        let expected = common::server::kserve_echo(
            &bloscar::pb::inference::ModelInferRequest::decode(&request[..]).unwrap(),
        );
        assert!(answer.into_inner() == expected.encode_to_vec());
    }
    drop(unread);
}
