//! The memory budget through real sidecars (client -> outbound -> inbound -> server, each
//! sidecar with its own small budget): many large calls share it and all arrive exactly;
//! a message held whole that could never fit fails with RESOURCE_EXHAUSTED while the
//! others go on; a client that never reads its responses makes the sidecars stop reading
//! from the server, holding no more than their budgets, and everything held is given
//! back when the client goes away.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bloscar::MemoryBudget;
use bloscar::container::{self, PatchSpec};
use bloscar::grpc::Code;
use bloscar::layer::{Role, UnknownPeer};
use bloscar::pb::bloscar::v1::{DType as NdDType, NdArray};
use bloscar::pb::example::imaging::v1::DenoiseRequest;
use bloscar::pb::example::imaging::v1::imaging_client::ImagingClient;
use bloscar::pb::inference::model_infer_response::InferOutputTensor;
use bloscar::pb::inference::{ModelInferResponse, ModelStreamInferResponse};
use bytes::Bytes;
use common::server::{MODEL_INFER, MODEL_STREAM_INFER, kserve_echo};
use common::*;
use http::{Request, Response};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1 << 20;
/// Each sidecar's budget: 4 MiB per direction.
const BUDGET: usize = 8 * MIB;

/// Starts outbound -> inbound -> `app`, each sidecar with a budget of its own.
async fn budgeted_pair(app: SocketAddr) -> (Proxy, MemoryBudget, Proxy, MemoryBudget) {
    let inbound_budget = MemoryBudget::new(BUDGET);
    let inbound = Proxy::start_budgeted(
        Role::Inbound,
        app,
        UnknownPeer::Identity,
        inbound_budget.clone(),
    )
    .await;
    let outbound_budget = MemoryBudget::new(BUDGET);
    let outbound = Proxy::start_budgeted(
        Role::Outbound,
        inbound.addr,
        UnknownPeer::Encode,
        outbound_budget.clone(),
    )
    .await;
    (outbound, outbound_budget, inbound, inbound_budget)
}

/// Smooth FP32 data, different for each `seed`.
fn smooth(bytes: usize, seed: usize) -> Vec<u8> {
    (0..bytes / 4)
        .flat_map(|i| (((i + seed * 7919) as f32) * 0.001).sin().to_le_bytes())
        .collect()
}

/// Checks that a budget was never overdrawn and refused nothing, then waits until
/// everything it lent has come back.
async fn assert_kept_and_given_back(name: &str, budget: &MemoryBudget) {
    let stats = budget.stats();
    println!("{name}: {stats:?}");
    assert!(stats.peak <= stats.capacity, "{name}: {stats:?}");
    assert_eq!((stats.too_large, stats.wait_limit), (0, 0), "{name}");
    wait_until(|| budget.stats().in_use == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_calls_share_a_small_budget_and_all_arrive_exactly() {
    let server = start_server().await;
    let (outbound, outbound_budget, inbound, inbound_budget) = budgeted_pair(server.addr).await;
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(channel(outbound.addr).await);
    }
    // 16 calls at once, 8 MiB each way: far more than either budget holds.
    let calls = (0..16).map(|i| {
        let channel = channels[i % channels.len()].clone();
        async move {
            let mut request = kserve_request(smooth(8 * MIB, i));
            request.id = format!("call-{i}");
            let expected = Bytes::from(kserve_echo(&request).encode_to_vec());
            let response = raw_unary(channel, MODEL_INFER, Bytes::from(request.encode_to_vec()))
                .await
                .unwrap_or_else(|status| panic!("call {i}: {status}"));
            assert!(response.get_ref() == &expected, "call {i}: echo differs");
        }
    });
    futures_util::future::join_all(calls).await;

    // The tensors crossed compressed in both directions.
    let encoded = |proxy: &Proxy, direction: &str| {
        proxy.metric(&format!(
            "bloscar_messages_total{{direction=\"{direction}\",outcome=\"encoded\",method=\"{MODEL_INFER}\"}}"
        ))
    };
    assert_eq!(encoded(&outbound, "request"), 16.0);
    assert_eq!(encoded(&inbound, "response"), 16.0);
    // Streams had to wait for memory: the budgets, not the messages, set the pace.
    let waits = outbound_budget.stats().waits + inbound_budget.stats().waits;
    assert!(waits > 0, "no stream ever waited");
    assert_kept_and_given_back("outbound", &outbound_budget).await;
    assert_kept_and_given_back("inbound", &inbound_budget).await;
    for proxy in [&outbound, &inbound] {
        let text = proxy.metrics.render();
        assert_eq!(
            common::metric_value(&text, "bloscar_calls_total"),
            common::metric_value(&text, "bloscar_calls_total{status=\"ok\"}"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_whole_beyond_the_budget_fails_alone() {
    let server = start_server().await;
    let (outbound, outbound_budget, _inbound, _inbound_budget) = budgeted_pair(server.addr).await;
    let image = |elements: usize| NdArray {
        dtype: NdDType::DtypeFloat32 as i32,
        shape: vec![elements as i64],
        data: smooth(elements * 4, 1),
    };
    let denoise = |elements: usize| DenoiseRequest {
        request_id: "r".into(),
        image: Some(image(elements)),
        bands: vec![],
        extras: Default::default(),
    };
    // The imaging service's tensors are found by a rule, which needs the whole message:
    // held whole, it costs twice its size, and 2 MiB is more than a call may hold here.
    let channel = channel(outbound.addr).await;
    let too_large = {
        let channel = channel.clone();
        async move {
            let mut client = ImagingClient::new(channel)
                .max_decoding_message_size(64 * MIB)
                .max_encoding_message_size(64 * MIB);
            client.denoise(denoise(MIB / 2)).await
        }
    };
    let streaming = (0..4).map(|i| {
        let channel = channel.clone();
        async move {
            let request = kserve_request(smooth(8 * MIB, i));
            let expected = Bytes::from(kserve_echo(&request).encode_to_vec());
            let response = raw_unary(channel, MODEL_INFER, Bytes::from(request.encode_to_vec()))
                .await
                .unwrap();
            assert!(response.get_ref() == &expected);
        }
    });
    let (refused, _) = tokio::join!(too_large, futures_util::future::join_all(streaming));
    let status = refused.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("memory budget"), "{status:?}");
    assert_eq!(outbound_budget.stats().too_large, 1);

    // A message held whole that fits goes through.
    let mut client = ImagingClient::new(channel);
    let small = denoise(64 << 10);
    let response = client.denoise(small.clone()).await.unwrap().into_inner();
    assert_eq!(response.image, small.image);
    wait_until(|| outbound_budget.stats().in_use == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_container_restoring_more_than_the_budget_is_refused() {
    let server = start_server().await;
    let (_outbound, _, inbound, inbound_budget) = budgeted_pair(server.addr).await;
    // A version-1 container is restored whole: its record and its message at once.
    let container = |bytes: usize| {
        let message = kserve_request(smooth(bytes, 2)).encode_to_vec();
        let tensor_at = message.len() - bytes;
        let patch = PatchSpec {
            offset: tensor_at,
            len: bytes,
            elem_size: 4,
            options: "lz4:5:byte".parse().unwrap(),
        };
        container::encode(&message, &[patch]).unwrap().bytes
    };
    let status = raw_h2_call(inbound.addr, Some("bloscar"), framed(true, &container(MIB))).await;
    assert_eq!(status.code, Code::Ok, "{status}");
    let status = raw_h2_call(
        inbound.addr,
        Some("bloscar"),
        framed(true, &container(6 * MIB)),
    )
    .await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    assert!(status.message.contains("memory budget"), "{status}");
    assert_eq!(inbound_budget.stats().too_large, 1);
    wait_until(|| inbound_budget.stats().in_use == 0).await;
}

/// A server that answers every call with `messages` streamed responses of `bytes` random
/// bytes each, sending only as fast as flow control lets it, and counts what it sent.
async fn start_flooding_server(messages: usize, bytes: usize) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let response = ModelStreamInferResponse {
        error_message: String::new(),
        infer_response: Some(ModelInferResponse {
            model_name: "flood".into(),
            outputs: vec![InferOutputTensor {
                name: "OUT".into(),
                datatype: "FP32".into(),
                shape: vec![(bytes / 4) as i64],
                ..Default::default()
            }],
            raw_output_contents: vec![random_bytes(bytes, 7)],
            ..Default::default()
        }),
    };
    let frame = Bytes::from(framed(false, &response.encode_to_vec()));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (frame, sent) = (frame.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let (frame, sent) = (frame.clone(), Arc::clone(&sent));
                    tokio::spawn(async move {
                        let head = Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let Ok(mut send) = respond.send_response(head, false) else {
                            return;
                        };
                        for _ in 0..messages {
                            let mut rest = frame.clone();
                            while !rest.is_empty() {
                                send.reserve_capacity(rest.len().min(MIB));
                                let granted =
                                    match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                                        Some(Ok(n)) => n,
                                        _ => return,
                                    };
                                let piece = rest.split_to(granted.min(rest.len()));
                                sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
                                if send.send_data(piece, false).is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        }
    });
    (addr, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_the_server_back_within_the_budget() {
    const STREAMS: usize = 4;
    const MESSAGES: usize = 32;
    let (app, sent) = start_flooding_server(MESSAGES, 4 * MIB).await;
    let (outbound, outbound_budget, _inbound, inbound_budget) = budgeted_pair(app).await;

    // One connection, four calls; the client keeps the default 64 KiB windows and never
    // reads a byte of the responses.
    let tcp = TcpStream::connect(outbound.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = framed(false, &kserve_request(vec![0; 64]).encode_to_vec());
    let mut unread = Vec::new();
    for _ in 0..STREAMS {
        let head = Request::post(format!("http://{}{MODEL_STREAM_INFER}", outbound.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(head, false).unwrap();
        send.send_data(Bytes::from(request.clone()), true).unwrap();
        unread.push(response);
        client = client.ready().await.unwrap();
    }
    let mut responses = Vec::new();
    for response in unread {
        responses.push(response.await.unwrap());
    }

    // The server gets going, then is held back: what it sent stops growing.
    wait_until(|| sent.load(Ordering::SeqCst) > 8 * MIB as u64).await;
    let mut last = 0;
    let mut steady = 0;
    while steady < 20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::SeqCst);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    let wanted = (STREAMS * MESSAGES * 4 * MIB) as u64;
    println!(
        "server sent {} of {} MiB; outbound {:?}; inbound {:?}",
        last >> 20,
        wanted >> 20,
        outbound_budget.stats(),
        inbound_budget.stats()
    );
    // Flow-control windows and both budgets hold a few tens of MiB, not 512.
    assert!(last < wanted / 4, "the server sent {last} bytes");
    // The sidecars hold what the client does not take, within their budgets (the
    // outbound hands each stream's next piece to HTTP/2, whose window the client does
    // not open again; the inbound holds the rest).
    let (outbound_stats, inbound_stats) = (outbound_budget.stats(), inbound_budget.stats());
    assert!(outbound_stats.in_use + inbound_stats.in_use > 0);
    for stats in [outbound_stats, inbound_stats] {
        assert!(stats.peak <= stats.capacity, "{stats:?}");
        assert_eq!((stats.too_large, stats.wait_limit), (0, 0), "{stats:?}");
    }

    // The client goes away: everything held is given back.
    drop(responses);
    drop(client);
    driver.abort();
    wait_until(|| outbound_budget.stats().in_use == 0 && inbound_budget.stats().in_use == 0).await;
}
