//! Real tonic clients and servers through two bloscar sidecars in-process:
//! client -> outbound -> counting relay -> inbound -> server.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bloscar::pb::bloscar::v1::{DType as NdDType, NdArray};
use bloscar::pb::example::imaging::v1::DenoiseRequest;
use bloscar::pb::example::imaging::v1::imaging_client::ImagingClient;
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use bloscar::pb::tensorflow::serving::PredictRequest;
use bloscar::pb::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use bloscar::pb::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto};
use bytes::Bytes;
use common::server::{MODEL_INFER, MODEL_STREAM_INFER, PLAIN_ECHO};
use common::*;
use futures_util::StreamExt;
use http::uri::PathAndQuery;
use prost::Message;
use tonic::metadata::MetadataValue;

/// Sends `request` twice (the first call teaches the outbound that its peer reads
/// bloscar) and checks both ends saw exactly the bytes the other sent.
async fn unary_twice(pair: &Pair, path: &'static str, request: &Bytes) -> Bytes {
    let mut last = Bytes::new();
    for _ in 0..2 {
        let response = raw_unary(pair.channel().await, path, request.clone())
            .await
            .unwrap();
        assert_eq!(pair.server.recorder.requests().last(), Some(request));
        assert_eq!(
            pair.server.recorder.responses().last(),
            Some(response.get_ref())
        );
        last = response.into_inner();
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_unary_is_bit_identical_and_compressed_between_sidecars() {
    let pair = Pair::start().await;
    let request = Bytes::from(kserve_request(smooth_f32(256 * 1024)).encode_to_vec());
    let response = unary_twice(&pair, MODEL_INFER, &request).await;
    let decoded = ModelInferResponse::decode(response).unwrap();
    let sent = ModelInferRequest::decode(request.clone()).unwrap();
    assert_eq!(decoded.raw_output_contents, sent.raw_input_contents);

    let (up, down) = pair.relay.counts();
    println!(
        "compressible: message {} B, relay up {up} B, down {down} B",
        request.len()
    );
    let len = request.len() as u64;
    // Both responses were encoded, and the second request (the first went as identity
    // while the peer's capability was unknown).
    assert!(down < len / 10, "responses not compressed: {down}");
    assert!(up < len + len / 10, "second request not compressed: {up}");

    let series = format!(
        "bloscar_messages_total{{direction=\"request\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
    );
    assert_eq!(pair.outbound.metric(&series), 1.0);
    let series = format!(
        "bloscar_messages_total{{direction=\"request\",outcome=\"decoded\",method=\"{MODEL_INFER}\"}}"
    );
    assert_eq!(pair.inbound.metric(&series), 1.0);
    let series = format!(
        "bloscar_messages_total{{direction=\"response\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
    );
    assert_eq!(pair.inbound.metric(&series), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompressible_tensors_cost_about_the_same_bytes() {
    let pair = Pair::start().await;
    let request = Bytes::from(kserve_request(random_bytes(1 << 20, 7)).encode_to_vec());
    unary_twice(&pair, MODEL_INFER, &request).await;
    let (up, down) = pair.relay.counts();
    println!(
        "random: message {} B, relay up {up} B, down {down} B",
        request.len()
    );
    let len = request.len() as u64;
    // Two requests and two responses, each about the message size (framing and HTTP/2
    // overhead only): within 2% of 2 * len, never smaller than the data.
    for total in [up, down] {
        assert!(total >= 2 * len, "{total} < {}", 2 * len);
        assert!(total < 2 * len + 2 * len / 50, "{total} too large");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_predict_through_the_pair() {
    let pair = Pair::start().await;
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: vec![tensor_shape_proto::Dim {
                size: 65536,
                name: String::new(),
            }],
            unknown_rank: false,
        }),
        tensor_content: smooth_f32(65536),
        ..Default::default()
    };
    let request = PredictRequest {
        model_spec: None,
        inputs: HashMap::from([("x".to_owned(), tensor.clone())])
            .into_iter()
            .collect(),
        output_filter: vec![],
    };
    for _ in 0..2 {
        let mut client = PredictionServiceClient::new(pair.channel().await);
        let response = client.predict(request.clone()).await.unwrap().into_inner();
        assert_eq!(response.outputs["x"], tensor);
    }
    // The bytes the server got are the bytes a plain client would have sent.
    assert_eq!(
        pair.server.recorder.requests().last().unwrap(),
        &Bytes::from(request.encode_to_vec())
    );
    let (_, down) = pair.relay.counts();
    assert!(
        down < tensor.tensor_content.len() as u64,
        "not compressed: {down}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_ndarrays_of_a_user_service_through_the_pair() {
    let pair = Pair::start().await;
    let image = NdArray {
        dtype: NdDType::DtypeFloat32 as i32,
        shape: vec![256, 256],
        data: smooth_f32(256 * 256),
    };
    let request = DenoiseRequest {
        request_id: "r1".into(),
        image: Some(image.clone()),
        bands: vec![],
        extras: Default::default(),
    };
    for _ in 0..2 {
        let mut client = ImagingClient::new(pair.channel().await);
        let response = client.denoise(request.clone()).await.unwrap().into_inner();
        assert_eq!(response.image.as_ref(), Some(&image));
        assert_eq!(response.request_id, "r1");
    }
    let (up, down) = pair.relay.counts();
    println!(
        "tagged: image {} B, relay up {up} B, down {down} B",
        image.data.len()
    );
    assert!(down < image.data.len() as u64 / 4, "not compressed: {down}");
}

/// `count` KServe requests of different content, for the streaming tests.
fn stream_messages(count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let data = if i % 2 == 0 {
                smooth_f32(32 * 1024 + i)
            } else {
                random_bytes(64 * 1024, i as u64)
            };
            Bytes::from(kserve_request(data).encode_to_vec())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_streaming_is_bit_identical() {
    let pair = Pair::start().await;
    // Teach the outbound first, so the stream's requests are encoded too.
    let warmup = Bytes::from(kserve_request(smooth_f32(1024)).encode_to_vec());
    raw_unary(pair.channel().await, MODEL_INFER, warmup)
        .await
        .unwrap();

    let messages = stream_messages(6);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let mut client = raw_client(pair.channel().await);
    client.ready().await.unwrap();
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let response = client
        .streaming(
            tonic::Request::new(outgoing),
            PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        )
        .await;
    // Send one message at a time and wait for its answer: a real conversation.
    tx.send(messages[0].clone()).await.unwrap();
    let mut inbound = response.unwrap().into_inner();
    let mut received = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            tx.send(message.clone()).await.unwrap();
        }
        received.push(inbound.next().await.unwrap().unwrap());
    }
    drop(tx);
    assert!(inbound.next().await.is_none());
    assert_eq!(pair.server.recorder.requests()[1..], messages[..]);
    assert_eq!(pair.server.recorder.responses()[1..], received[..]);
    for (request, response) in messages.iter().zip(&received) {
        let request = ModelInferRequest::decode(request.clone()).unwrap();
        let response = ModelStreamInferResponse::decode(response.clone()).unwrap();
        assert_eq!(
            response.infer_response.unwrap().raw_output_contents,
            request.raw_input_contents
        );
    }
    let encoded = format!(
        "bloscar_messages_total{{direction=\"request\",outcome=\"encoded\",method=\"{MODEL_STREAM_INFER}\"}}"
    );
    // The test sidecars' fixed setting compresses every tensor above the minimum size;
    // Blosc stores the noisy ones as they are, inside the container.
    assert_eq!(pair.outbound.metric(&encoded), 6.0, "every stream request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_is_bit_identical() {
    let pair = Pair::start_with(bloscar::layer::UnknownPeer::Encode).await;
    let messages = stream_messages(5);
    let mut client = raw_client(pair.channel().await);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(futures_util::stream::iter(messages.clone()));
    request
        .metadata_mut()
        .insert("x-mode", MetadataValue::from_static("client"));
    let response = client
        .client_streaming(
            request,
            PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        )
        .await
        .unwrap();
    assert_eq!(pair.server.recorder.requests(), messages);
    assert_eq!(
        pair.server.recorder.responses(),
        vec![response.into_inner()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_is_bit_identical() {
    let pair = Pair::start_with(bloscar::layer::UnknownPeer::Encode).await;
    let message = stream_messages(1).remove(0);
    let mut client = raw_client(pair.channel().await);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(message.clone());
    request
        .metadata_mut()
        .insert("x-mode", MetadataValue::from_static("server"));
    request
        .metadata_mut()
        .insert("x-count", MetadataValue::from_static("4"));
    let response = client
        .server_streaming(
            request,
            PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        )
        .await
        .unwrap();
    let received: Vec<Bytes> = response.into_inner().map(|m| m.unwrap()).collect().await;
    assert_eq!(received.len(), 4);
    assert_eq!(pair.server.recorder.requests(), vec![message]);
    assert_eq!(pair.server.recorder.responses(), received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_statuses_and_trailers_arrive_as_sent() {
    let pair = Pair::start().await;
    let message = Bytes::from_static(b"\x0a\x03abc");

    // Custom metadata both ways.
    let mut request = tonic::Request::new(message.clone());
    request
        .metadata_mut()
        .insert("x-echo", MetadataValue::from_static("hello"));
    request
        .metadata_mut()
        .insert_bin("x-blob-bin", MetadataValue::from_bytes(&[0, 1, 2, 255]));
    let response = raw_unary_request(pair.channel().await, PLAIN_ECHO, request)
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-echo").unwrap(), "hello");
    assert_eq!(response.get_ref(), &message);
    let seen = pair.server.recorder.last_headers();
    assert_eq!(seen["x-echo"], "hello");
    assert_eq!(seen["x-blob-bin"], "AAEC/w");
    assert_eq!(seen["te"], "trailers");
    for name in ["grpc-accept-encoding", "grpc-encoding"] {
        let value = seen.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert!(
            !value.unwrap_or_default().contains("bloscar"),
            "the app saw the bloscar token in {name}"
        );
    }

    // A status with a message that needs percent-encoding, and trailer metadata.
    let mut request = tonic::Request::new(message.clone());
    request
        .metadata_mut()
        .insert("x-fail-code", MetadataValue::from_static("9"));
    request.metadata_mut().insert(
        "x-fail-message",
        MetadataValue::from_static("precondition: 100% not met"),
    );
    let status = raw_unary_request(pair.channel().await, PLAIN_ECHO, request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), "precondition: 100% not met");
    assert_eq!(status.metadata().get("x-trailer").unwrap(), "done");

    // Trailers after a streamed response, through the encoding path.
    let mut client = raw_client(pair.channel().await);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(stream_messages(1).remove(0));
    for (k, v) in [
        ("x-mode", "server"),
        ("x-count", "2"),
        ("x-fail-code", "10"),
        ("x-fail-message", "aborted after two"),
    ] {
        request
            .metadata_mut()
            .insert(k, MetadataValue::try_from(v).unwrap());
    }
    let mut stream = client
        .server_streaming(
            request,
            PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.unwrap().is_ok());
    assert!(stream.next().await.unwrap().is_ok());
    let status = stream.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(status.message(), "aborted after two");
    assert_eq!(status.metadata().get("x-trailer").unwrap(), "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_propagate() {
    let pair = Pair::start().await;
    let mut request = tonic::Request::new(Bytes::from_static(b"\x0a\x01x"));
    request.set_timeout(Duration::from_millis(300));
    request
        .metadata_mut()
        .insert("x-sleep-ms", MetadataValue::from_static("3000"));
    let status = raw_unary_request(pair.channel().await, PLAIN_ECHO, request)
        .await
        .unwrap_err();
    // Two timers race: tonic's client enforces its own deadline (CANCELLED, "Timeout
    // expired"), the outbound sidecar answers DEADLINE_EXCEEDED. The sidecars' exact
    // status is checked with a raw client in tests/deadlines.rs.
    assert!(
        status.code() == tonic::Code::DeadlineExceeded
            || (status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired"),
        "{status:?}"
    );
    // The header reached the server unchanged, and its call was abandoned.
    assert_eq!(
        pair.server.recorder.last_headers()["grpc-timeout"],
        "300000u"
    );
    wait_until(|| {
        pair.server
            .recorder
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancellation_reaches_the_server() {
    let pair = Pair::start().await;
    let mut request = tonic::Request::new(Bytes::from_static(b"\x0a\x01x"));
    request
        .metadata_mut()
        .insert("x-sleep-ms", MetadataValue::from_static("30000"));
    let call = raw_unary_request(pair.channel().await, PLAIN_ECHO, request);
    let call = tokio::spawn(call);
    // Cancel once the server has the call.
    wait_until(|| pair.server.recorder.requests().len() == 1).await;
    call.abort();
    wait_until(|| {
        pair.server
            .recorder
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(
        pair.server
            .recorder
            .completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The proxies count no stream left in flight.
    wait_until(|| pair.outbound.metric("bloscar_streams_in_flight") == 0.0).await;
    wait_until(|| pair.inbound.metric("bloscar_streams_in_flight") == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cancellation_reaches_the_client() {
    let pair = Pair::start().await;
    // The server ends the stream with CANCELLED after one answer.
    let mut client = raw_client(pair.channel().await);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(stream_messages(1).remove(0));
    for (k, v) in [("x-mode", "server"), ("x-count", "1"), ("x-fail-code", "1")] {
        request
            .metadata_mut()
            .insert(k, MetadataValue::try_from(v).unwrap());
    }
    let mut stream = client
        .server_streaming(
            request,
            PathAndQuery::from_static(MODEL_STREAM_INFER),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.unwrap().is_ok());
    assert_eq!(
        stream.next().await.unwrap().unwrap_err().code(),
        tonic::Code::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_reaches_the_client_as_cancelled() {
    // An HTTP/2 upstream that starts the response, then resets the stream with CANCEL.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(tcp).await.unwrap();
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut send = respond.send_response(response, false).unwrap();
            send.send_reset(h2::Reason::CANCEL);
        }
    });
    let outbound = Proxy::start(bloscar::layer::Role::Outbound, upstream).await;
    let status = raw_unary(
        channel(outbound.addr).await,
        PLAIN_ECHO,
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_stay_bit_identical() {
    let pair = Pair::start_with(bloscar::layer::UnknownPeer::Encode).await;
    let channel = pair.channel().await;
    let mut calls = Vec::new();
    for i in 0..48usize {
        let data = match i % 3 {
            0 => smooth_f32(16 * 1024 + i * 100),
            1 => random_bytes(40 * 1024 + i, i as u64),
            _ => smooth_f32(200 + i),
        };
        let request = Bytes::from(kserve_request(data).encode_to_vec());
        let channel = channel.clone();
        calls.push(tokio::spawn(async move {
            let response = raw_unary(channel, MODEL_INFER, request.clone())
                .await
                .unwrap()
                .into_inner();
            (request, response)
        }));
    }
    let mut sent = Vec::new();
    for call in calls {
        let (request, response) = call.await.unwrap();
        let request_msg = ModelInferRequest::decode(request.clone()).unwrap();
        let response_msg = ModelInferResponse::decode(response).unwrap();
        assert_eq!(
            response_msg.raw_output_contents,
            request_msg.raw_input_contents
        );
        sent.push(request);
    }
    let mut received = pair.server.recorder.requests();
    received.sort();
    sent.sort();
    assert_eq!(received, sent);
    wait_until(|| pair.outbound.metric("bloscar_streams_in_flight") == 0.0).await;
}
