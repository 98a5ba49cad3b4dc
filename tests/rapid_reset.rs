//! Calls reset in the same write that opens them (the HTTP/2 "rapid reset" pattern) must
//! cost the app nothing: the outbound drops them before it opens a stream upstream, so
//! their resets never reach the shared connection to the peer sidecar, and a connection
//! of nothing but such calls is closed while other clients' calls go on.

mod common;

use std::sync::atomic::Ordering;

use common::opening::{GOAWAY, next_frame, ping};
use common::server::MODEL_INFER;
use common::{Pair, kserve_request, smooth_f32};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of literal fields without indexing, so that each block stands alone
/// (no HPACK table state shared between the calls).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The preface, an empty SETTINGS, and `calls` ModelInfer calls each opened and
/// cancelled at once: the bytes of one write.
fn opened_and_reset(calls: u32) -> Vec<u8> {
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", MODEL_INFER),
        (":authority", "rapid-reset.test"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    for n in 0..calls {
        let stream = 2 * n + 1;
        bytes.extend(frame(HEADERS, END_HEADERS, stream, &block));
        bytes.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    bytes
}

async fn well_behaved_call(pair: &Pair) {
    let request = kserve_request(smooth_f32(64 * 1024));
    let answer = common::raw_unary(
        pair.channel().await,
        MODEL_INFER,
        request.encode_to_vec().into(),
    )
    .await
    .expect("the well-behaved call succeeds");
    assert!(!answer.into_inner().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reset_in_the_write_that_opens_them_never_reach_the_app() {
    let pair = Pair::start().await;
    // The upstream connection is open, so nothing but the reset holds a call back.
    well_behaved_call(&pair).await;

    let mut attacker = TcpStream::connect(pair.outbound.addr).await.unwrap();
    attacker.write_all(&opened_and_reset(15)).await.unwrap();
    // The acknowledgement comes after the sidecar has read every frame before the PING.
    assert!(ping(&mut attacker).await, "the connection stays open");
    well_behaved_call(&pair).await;

    let calls_seen = pair.server.recorder.headers.lock().unwrap().len();
    assert_eq!(calls_seen, 2, "only the well-behaved calls reached the app");
    assert_eq!(pair.server.recorder.cancelled.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_of_rapid_resets_is_closed_and_other_clients_are_served() {
    let pair = Pair::start().await;
    well_behaved_call(&pair).await;

    let mut attacker = TcpStream::connect(pair.outbound.addr).await.unwrap();
    attacker.write_all(&opened_and_reset(500)).await.unwrap();
    let mut goaway = None;
    while let Some(frame) = next_frame(&mut attacker).await {
        if frame.kind == GOAWAY {
            goaway = Some(frame);
        }
    }
    assert!(goaway.is_some(), "the sidecar said GOAWAY before closing");

    well_behaved_call(&pair).await;
    let calls_seen = pair.server.recorder.headers.lock().unwrap().len();
    assert_eq!(calls_seen, 2, "only the well-behaved calls reached the app");
}
