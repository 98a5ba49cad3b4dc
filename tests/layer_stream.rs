//! The layer's streaming bodies end to end without a network: an outbound layer over an
//! inbound layer over an echo app, with the bytes between the two layers recorded.
//! Messages of every size and content, cut into frames anywhere, reach the app and come
//! back exactly; tensors worth it cross as bloscar records.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bloscar::layer::{BoxBody, Role, UnknownPeer};
use bloscar::locate::{KSERVE_MODEL_INFER, Locator};
use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::{
    BloscarLayer, Chooser, CompressOptions, FixedChooser, Limits, MessageCodec, MessageCost,
    TensorInfo,
};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tower::{Layer, ServiceExt, service_fn};

fn codec(min_size: usize) -> Arc<MessageCodec> {
    let chooser = FixedChooser {
        options: "lz4:5:byte".parse().unwrap(),
        min_size,
    };
    codec_with(Arc::new(chooser))
}

fn codec_with(chooser: Arc<dyn Chooser>) -> Arc<MessageCodec> {
    Arc::new(MessageCodec::new(
        Locator::default(),
        chooser,
        Limits::default(),
    ))
}

/// Compresses the tensors whose name ends in an even digit, stores the others: both
/// decisions in one message.
struct EvenNames;

impl Chooser for EvenNames {
    fn choose(&self, tensor: &TensorInfo<'_>, _data: &[u8]) -> Option<CompressOptions> {
        let even = tensor
            .name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_digit() && (b - b'0').is_multiple_of(2));
        even.then(|| "zstd:1:byte".parse().unwrap())
    }
}

/// gRPC framing of `messages` (identity).
fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| common::framed(false, m))
        .collect()
}

/// A body delivering `bytes` in frames of `piece` bytes, then `grpc-status: 0` trailers
/// when `trailers`.
fn body(bytes: Vec<u8>, piece: usize, trailers: bool) -> BoxBody {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(piece.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    if trailers {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", "0".parse().unwrap());
        frames.push(Ok(Frame::trailers(map)));
    }
    StreamBody::new(futures_util::stream::iter(frames))
        .map_err(|e| match e {})
        .boxed_unsync()
}

fn grpc_request(path: &str, body: BoxBody) -> Request<BoxBody> {
    Request::builder()
        .method("POST")
        .uri(format!("http://app{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

/// What crossed between the two layers, and what the app received.
#[derive(Default)]
struct Seen {
    wire_request: Vec<u8>,
    wire_request_encoding: Option<String>,
    app_request: Vec<u8>,
}

/// Runs `messages` through outbound -> inbound -> echo app, fed in frames of `piece`
/// bytes. Returns what the client got back and what was seen on the way.
async fn round_trip(
    messages: &[Vec<u8>],
    piece: usize,
    min_tensor: usize,
) -> (Vec<u8>, Option<HeaderMap>, Arc<Mutex<Seen>>) {
    round_trip_with(messages, piece, codec(min_tensor)).await
}

async fn round_trip_with(
    messages: &[Vec<u8>],
    piece: usize,
    codec: Arc<MessageCodec>,
) -> (Vec<u8>, Option<HeaderMap>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app_seen = Arc::clone(&seen);
    let app = service_fn(move |request: Request<BoxBody>| echo(Arc::clone(&app_seen), request));
    let inbound = BloscarLayer::new(Role::Inbound, Arc::clone(&codec)).layer(app);
    let tap_seen = Arc::clone(&seen);
    // Between the layers: the wire bytes are recorded as they pass.
    let wire = service_fn(move |request: Request<BoxBody>| {
        let (parts, wire_body) = request.into_parts();
        let seen = Arc::clone(&tap_seen);
        seen.lock().unwrap().wire_request_encoding = parts
            .headers
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let wire_body = wire_body
            .map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    seen.lock().unwrap().wire_request.extend_from_slice(data);
                }
                frame
            })
            .boxed_unsync();
        inbound
            .clone()
            .oneshot(Request::from_parts(parts, wire_body))
    });
    let outbound = BloscarLayer::new(Role::Outbound, codec)
        .unknown_peer(UnknownPeer::Encode)
        .layer(wire);
    let request = grpc_request(KSERVE_MODEL_INFER, body(framed(messages), piece, false));
    let response = outbound.oneshot(request).await.unwrap();
    assert!(response.headers().get("grpc-encoding").is_none());
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers, seen)
}

/// The app: records the request's bytes and answers them back.
async fn echo(
    seen: Arc<Mutex<Seen>>,
    request: Request<BoxBody>,
) -> Result<Response<BoxBody>, std::io::Error> {
    let bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return Err(std::io::Error::other(err.to_string())),
    };
    seen.lock().unwrap().app_request = bytes.to_vec();
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(body(bytes.to_vec(), 7000, true))
        .unwrap())
}

fn smooth_f32(count: usize, seed: f32) -> Vec<u8> {
    (0..count)
        .flat_map(|i| {
            ((i as f32 * 0.001 + seed).sin() * 100.0)
                .round()
                .to_le_bytes()
        })
        .collect()
}

fn request(inputs: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    ModelInferRequest {
        model_name: "m".into(),
        model_version: "1".into(),
        inputs: inputs
            .iter()
            .map(|(name, datatype, data)| InferInputTensor {
                name: (*name).into(),
                datatype: (*datatype).into(),
                shape: vec![data.len() as i64],
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|(_, _, d)| d.clone()).collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_chunk_tensor_crosses_compressed_and_comes_back_exactly() {
    // 12 MiB of smooth floats: twelve Blosc segments, then an echo the other way.
    let message = request(&[("INPUT0", "FP32", smooth_f32(3 << 20, 0.5))]);
    for piece in [16 * 1024, 1 << 20, 3] {
        if piece == 3 && message.len() > 1 << 20 {
            // One-byte-ish frames of 12 MiB take long in debug builds; the property test
            // below covers tiny frames on smaller messages.
            continue;
        }
        let (out, trailers, seen) = round_trip(std::slice::from_ref(&message), piece, 1024).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.app_request, framed(std::slice::from_ref(&message)));
        assert_eq!(out, framed(std::slice::from_ref(&message)));
        assert_eq!(trailers.unwrap().get("grpc-status").unwrap(), "0");
        assert_eq!(seen.wire_request_encoding.as_deref(), Some("bloscar"));
        assert!(
            seen.wire_request.len() * 3 < message.len(),
            "wire {} bytes for {}",
            seen.wire_request.len(),
            message.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_messages_cross_as_identity() {
    let messages = vec![
        request(&[("small", "FP32", smooth_f32(10, 0.0))]),
        Vec::new(),
    ];
    let (out, _, seen) = round_trip(&messages, 4096, 1024).await;
    let seen = seen.lock().unwrap();
    assert_eq!(out, framed(&messages));
    assert_eq!(seen.app_request, framed(&messages));
    // Nothing was worth a container: the wire carries the identity messages as they were.
    assert_eq!(seen.wire_request, framed(&messages));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_compressed_anyway_costs_only_the_record_heads() {
    // A fixed setting compresses whatever it is given; Blosc stores what does not
    // compress, so the wire grows by the record and chunk heads only.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let messages = vec![request(&[("noise", "UINT8", noise)])];
    let (out, _, seen) = round_trip(&messages, 64 * 1024, 1024).await;
    let seen = seen.lock().unwrap();
    assert!(out == framed(&messages));
    assert!(seen.app_request == framed(&messages));
    let overhead = seen.wire_request.len() as f64 / framed(&messages).len() as f64 - 1.0;
    assert!((0.0..0.001).contains(&overhead), "overhead {overhead}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any sequence of KServe requests (any dtype, lengths not a multiple of the element
    /// size, empty tensors, several inputs), cut into frames of any size, reaches the app
    /// and comes back exactly.
    #[test]
    fn any_requests_in_any_framing_cross_exactly(
        tensors in proptest::collection::vec(
            (0usize..4, 0usize..2_500_000, proptest::bool::ANY),
            1..4,
        ),
        messages in 1usize..3,
        piece in 1usize..70_000,
        chooser in 0usize..3,
    ) {
        const DTYPES: [&str; 4] = ["FP32", "UINT8", "FP16", "INT64"];
        let inputs: Vec<(String, &str, Vec<u8>)> = tensors
            .iter()
            .enumerate()
            .map(|(i, &(dtype, len, smooth))| {
                let data = if smooth {
                    smooth_f32(len / 4 + 1, i as f32)[..len].to_vec()
                } else {
                    (0..len).map(|j| (j * 7 + i) as u8).collect()
                };
                (format!("in{i}"), DTYPES[dtype], data)
            })
            .collect();
        let refs: Vec<(&str, &str, Vec<u8>)> = inputs
            .iter()
            .map(|(n, d, v)| (n.as_str(), *d, v.clone()))
            .collect();
        let message = request(&refs);
        let all: Vec<Vec<u8>> = (0..messages).map(|_| message.clone()).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Compress every tensor, store every tensor, or both in one message.
        let codec = match chooser {
            0 => codec(1024),
            1 => codec(usize::MAX),
            _ => codec_with(Arc::new(EvenNames)),
        };
        let (out, _, seen) = runtime.block_on(round_trip_with(&all, piece, codec));
        let expected = framed(&all);
        proptest::prop_assert_eq!(&seen.lock().unwrap().app_request, &expected);
        proptest::prop_assert_eq!(out, expected);
    }
}

/// A body fed through a channel, so a test decides when each piece is sent.
fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, BoxBody) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    (
        tx,
        StreamBody::new(stream)
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_receives_a_message_before_the_client_has_sent_all_of_it() {
    // A store-and-forward sidecar could not deliver any of a message before its end: the
    // client here sends its second half only once the app has seen part of the first.
    let message = request(&[("big", "FP32", smooth_f32(4 << 20, 0.25))]);
    let framed_message = framed(std::slice::from_ref(&message));
    let (first_seen_tx, first_seen) = tokio::sync::oneshot::channel::<usize>();
    let first_seen_tx = Arc::new(Mutex::new(Some(first_seen_tx)));
    let received = Arc::new(Mutex::new(Vec::new()));
    let app_received = Arc::clone(&received);
    let app = service_fn(move |request: Request<BoxBody>| {
        reading_app(
            Arc::clone(&first_seen_tx),
            Arc::clone(&app_received),
            request,
        )
    });
    let inbound = BloscarLayer::new(Role::Inbound, codec(1024)).layer(app);
    let outbound = BloscarLayer::new(Role::Outbound, codec(1024))
        .unknown_peer(UnknownPeer::Encode)
        .layer(inbound);
    let (tx, client_body) = channel_body();
    let call = tokio::spawn(outbound.oneshot(grpc_request(KSERVE_MODEL_INFER, client_body)));
    let half = framed_message.len() / 2;
    for piece in framed_message[..half].chunks(64 * 1024) {
        tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), first_seen)
        .await
        .expect("the app saw nothing of the first half: the message was held back")
        .unwrap();
    assert!(seen < framed_message.len());
    for piece in framed_message[half..].chunks(64 * 1024) {
        tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    drop(tx);
    let response = call.await.unwrap().unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(*received.lock().unwrap(), framed_message);
}

type Signal = Arc<Mutex<Option<tokio::sync::oneshot::Sender<usize>>>>;

/// An app that reads its request frame by frame and signals once it holds 2 MiB.
async fn reading_app(
    first_seen: Signal,
    received: Arc<Mutex<Vec<u8>>>,
    request: Request<BoxBody>,
) -> Result<Response<BoxBody>, std::io::Error> {
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => return Err(std::io::Error::other(err.to_string())),
        };
        if let Ok(data) = frame.into_data() {
            let mut received = received.lock().unwrap();
            received.extend_from_slice(&data);
            if received.len() >= 2 << 20
                && let Some(tx) = first_seen.lock().unwrap().take()
            {
                let _ = tx.send(received.len());
            }
        }
    }
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(body_of(framed(&[Vec::new()])))
        .unwrap())
}

fn body_of(bytes: Vec<u8>) -> BoxBody {
    body(bytes, 1 << 20, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_stored_message_streams_as_identity() {
    // Nothing is chosen for compression: after the first chunk the message is committed
    // to identity and the rest streams through.
    let message = request(&[("big", "FP32", smooth_f32(3 << 20, 0.5))]);
    let messages = vec![message.clone(), message];
    for piece in [16 * 1024, 1 << 20, 5 << 20] {
        let (out, _, seen) = round_trip(&messages, piece, usize::MAX).await;
        let seen = seen.lock().unwrap();
        assert!(out == framed(&messages), "piece {piece}");
        assert!(seen.app_request == framed(&messages));
        assert!(seen.wire_request == framed(&messages));
    }
}

/// Compresses every tensor and records what the real-time check is told.
#[derive(Default)]
struct CostRecorder(Mutex<Vec<MessageCost>>);

impl Chooser for CostRecorder {
    fn choose(&self, _: &TensorInfo<'_>, _: &[u8]) -> Option<CompressOptions> {
        Some("lz4:5:byte".parse().unwrap())
    }

    fn observe_cost(&self, _: &TensorInfo<'_>, cost: &MessageCost) {
        self.0.lock().unwrap().push(*cost);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_costs_carry_the_peers_decompression_time() {
    let recorder = Arc::new(CostRecorder::default());
    let message = request(&[("big", "FP32", smooth_f32(1 << 20, 0.5))]);
    let (out, _, _) = round_trip_with(
        std::slice::from_ref(&message),
        64 * 1024,
        codec_with(recorder.clone()),
    )
    .await;
    assert!(out == framed(std::slice::from_ref(&message)));
    let costs = recorder.0.lock().unwrap().clone();
    // The echo answers with the request's bytes, which hold no response tensor: the
    // one cost is the request's, with the inbound's decompression time from the
    // response's trailers.
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert!(
        costs[0].peer_decompress_secs.is_some_and(|s| s > 0.0),
        "{costs:?}"
    );
    assert!(costs[0].wire_len < costs[0].original_len);
}
