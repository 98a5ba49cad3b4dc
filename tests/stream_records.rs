//! Forged streamed containers (wire format version 2) sent to a real inbound sidecar by
//! a raw HTTP/2 client: each bad run gets its exact gRPC status, and the app behind the
//! sidecar never receives a byte that was not verified: what it got is always a prefix
//! of the true message.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bloscar::container::stream::{blosc_segment, header_record, plain_segment_head};
use bloscar::grpc::{Code, Status};
use bloscar::layer::Role;
use bytes::Bytes;
use common::{Proxy, framed, raw_h2_call};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An app that records the raw request bytes it reads and answers `grpc-status: 0`.
async fn start_recording_app() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let app_seen = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&app_seen);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let index = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Vec::new());
                            seen.len() - 1
                        };
                        let mut body = request.into_body();
                        while let Some(Ok(frame)) = body.frame().await {
                            if let Ok(data) = frame.into_data() {
                                seen.lock().unwrap()[index].extend_from_slice(&data);
                            }
                        }
                        let response = Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Sends `body` as one request in `grpc-encoding: bloscar` and returns the call's status.
async fn call(addr: SocketAddr, body: Vec<u8>) -> Status {
    raw_h2_call(addr, Some("bloscar"), body).await
}

/// A message of smooth floats and the records of its run: header, a plain segment, two
/// Blosc segments and a closing plain segment.
fn message_and_records() -> (Vec<u8>, Vec<Vec<u8>>) {
    let message: Vec<u8> = (0..600_000u32)
        .flat_map(|i| ((i as f32 * 0.001).sin()).to_le_bytes())
        .collect();
    let options = "lz4:5:byte".parse().unwrap();
    let cuts = [0, 1000, 1_000_000, 2_000_000, message.len()];
    let mut records = vec![header_record(message.len() as u64).to_vec()];
    for (i, pair) in cuts.windows(2).enumerate() {
        let data = &message[pair[0]..pair[1]];
        if i % 3 == 0 {
            let mut record = plain_segment_head(data).unwrap().to_vec();
            record.extend_from_slice(data);
            records.push(record);
        } else {
            records.push(blosc_segment(data, 4, options).unwrap());
        }
    }
    (message, records)
}

fn run(records: &[Vec<u8>]) -> Vec<u8> {
    records.iter().flat_map(|r| framed(true, r)).collect()
}

/// What the app received for the last call is a prefix of the true framed message.
fn assert_only_verified(seen: &Mutex<Vec<Vec<u8>>>, message: &[u8]) {
    assert_prefix_of(seen, &framed(false, message));
}

/// What the app received for the last call is a prefix of `expected`.
fn assert_prefix_of(seen: &Mutex<Vec<Vec<u8>>>, expected: &[u8]) {
    if let Some(got) = seen.lock().unwrap().last() {
        assert!(got.len() <= expected.len());
        assert!(
            got[..] == expected[..got.len()],
            "the app received bytes that are not the message's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_run_reaches_the_app_whole() {
    let (app, seen) = start_recording_app().await;
    let inbound = Proxy::start(Role::Inbound, app).await;
    let (message, records) = message_and_records();
    let status = call(inbound.addr, run(&records)).await;
    assert_eq!(status.code, Code::Ok, "{status}");
    assert!(seen.lock().unwrap().last().unwrap()[..] == framed(false, &message)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_at_any_record_boundary_is_data_loss() {
    let (app, seen) = start_recording_app().await;
    let inbound = Proxy::start(Role::Inbound, app).await;
    let (message, records) = message_and_records();
    for cut in 1..records.len() {
        let status = call(inbound.addr, run(&records[..cut])).await;
        assert_eq!(
            status.code,
            Code::DataLoss,
            "cut after record {cut}: {status}"
        );
        assert_only_verified(&seen, &message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_any_record_is_caught_before_the_app() {
    let (app, seen) = start_recording_app().await;
    let inbound = Proxy::start(Role::Inbound, app).await;
    let (message, records) = message_and_records();
    for index in 0..records.len() {
        let mut bad = records.clone();
        let at = bad[index].len() / 2;
        bad[index][at] ^= 0x10;
        let status = call(inbound.addr, run(&bad)).await;
        assert_eq!(status.code, Code::DataLoss, "record {index}: {status}");
        assert_only_verified(&seen, &message);
    }
}

/// Rewrites a record's checksum after an edit, so that the edit reaches the size checks.
fn reseal_segment(record: &mut [u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[..8]);
    hasher.update(&record[12..]);
    let crc = hasher.finalize();
    record[8..12].copy_from_slice(&crc.to_le_bytes());
}

fn reseal_header(record: &mut [u8]) {
    let crc = crc32fast::hash(&record[..16]);
    record[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_lengths_fail_before_anything_unverified_is_delivered() {
    let (app, seen) = start_recording_app().await;
    let inbound = Proxy::start(Role::Inbound, app).await;
    let (message, records) = message_and_records();

    // The header says less than the segments restore: the segment that would overrun
    // it is refused before it is decompressed.
    let mut short = records.clone();
    short[0][8..16].copy_from_slice(&((message.len() - 10) as u64).to_le_bytes());
    reseal_header(&mut short[0]);
    let status = call(inbound.addr, run(&short)).await;
    assert_eq!(status.code, Code::Internal, "{status}");
    assert!(status.message.contains("bloscar"), "{status}");
    // The app was promised the header's length, then got the message's bytes up to the
    // segment that overran it: never a whole message.
    let declared = message.len() - 10;
    let mut promised = framed(false, &message[..declared]);
    promised.truncate(5 + declared);
    assert_prefix_of(&seen, &promised);

    // A Blosc segment claims more restored bytes than its chunk holds: the chunk's own
    // header disagrees, which is corrupt data.
    let mut lying = records.clone();
    let claimed = u32::from_le_bytes(lying[2][4..8].try_into().unwrap()) + 4;
    lying[2][4..8].copy_from_slice(&claimed.to_le_bytes());
    reseal_segment(&mut lying[2]);
    let status = call(inbound.addr, run(&lying)).await;
    assert_eq!(status.code, Code::DataLoss, "{status}");
    assert_only_verified(&seen, &message);

    // A decompression bomb: a tiny record claiming a segment far above the limit.
    let mut bomb = records.clone();
    bomb[2][4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_segment(&mut bomb[2]);
    let status = call(inbound.addr, run(&bomb)).await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    assert_only_verified(&seen, &message);

    // A header that promises more than the message size limit.
    let mut huge = records.clone();
    huge[0][8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    reseal_header(&mut huge[0]);
    let status = call(inbound.addr, run(&huge[..1])).await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_out_of_place_are_refused() {
    let (app, seen) = start_recording_app().await;
    let inbound = Proxy::start(Role::Inbound, app).await;
    let (message, records) = message_and_records();
    // A segment before any header.
    let status = call(inbound.addr, run(&records[1..])).await;
    assert_eq!(status.code, Code::Internal, "{status}");
    // A second header inside an open container.
    let mut twice = records.clone();
    twice.insert(2, records[0].clone());
    let status = call(inbound.addr, run(&twice)).await;
    assert_eq!(status.code, Code::Internal, "{status}");
    assert_only_verified(&seen, &message);
    // An identity message inside an open container.
    let mut body = run(&records[..2]);
    body.extend_from_slice(&framed(false, b"plain"));
    let status = call(inbound.addr, body).await;
    assert_eq!(status.code, Code::Internal, "{status}");
    assert_only_verified(&seen, &message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_bomb_is_refused_before_it_is_restored() {
    let (app, seen) = start_recording_app().await;
    let inbound = Proxy::start(Role::Inbound, app).await;
    // 17 MiB of zeros in a container of a few KiB: above the test sidecar's 16 MiB
    // limit (a version-1 message is restored whole, and at most 64 MiB).
    let message = vec![0u8; 17 << 20];
    let spec = bloscar::container::PatchSpec {
        offset: 0,
        len: message.len(),
        elem_size: 1,
        options: "lz4:5:none".parse().unwrap(),
    };
    let container = bloscar::container::encode(&message, &[spec]).unwrap().bytes;
    assert!(container.len() < 1 << 20);
    let status = call(inbound.addr, framed(true, &container)).await;
    assert_eq!(status.code, Code::ResourceExhausted, "{status}");
    // The app saw at most an empty, aborted request.
    assert!(seen.lock().unwrap().iter().all(|got| got.is_empty()));
}
