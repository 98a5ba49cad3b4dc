//! Real tonic clients and servers through two bloscar sidecars in-process.

mod common;

use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse};
use bytes::Bytes;
use common::server::MODEL_INFER;
use common::*;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_unary_is_bit_identical_and_compressed_between_sidecars() {
    let pair = Pair::start().await;
    let request = Bytes::from(kserve_request(smooth_f32(256 * 1024)).encode_to_vec());
    // The first call teaches the outbound that its peer speaks bloscar.
    for _ in 0..2 {
        let response = raw_unary(pair.channel().await, MODEL_INFER, request.clone())
            .await
            .unwrap();
        assert_eq!(pair.server.recorder.requests().last(), Some(&request));
        assert_eq!(
            pair.server.recorder.responses().last(),
            Some(response.get_ref())
        );
        let decoded = ModelInferResponse::decode(response.into_inner()).unwrap();
        let sent = ModelInferRequest::decode(request.clone()).unwrap();
        assert_eq!(decoded.raw_output_contents, sent.raw_input_contents);
    }
    let (up, down) = pair.relay.counts();
    println!(
        "relay bytes up {up} down {down}, message {} bytes",
        request.len()
    );
    // Both responses were encoded, the second request too.
    assert!(
        down < request.len() as u64,
        "responses not compressed: {down}"
    );
    assert!(
        up < 2 * request.len() as u64 * 3 / 4,
        "second request not compressed: {up}"
    );
}
