//! Containers that expand to the message limit: genuine bloscar streamed containers,
//! made with the library, sent straight to the inbound as a peer sidecar would send
//! them. Each restores a ModelInfer request of nearly `BLOSCAR_MAX_MESSAGE_BYTES` from
//! about 1 MiB of Blosc-compressed zeros, 50 of them at once ([`expanding`]). Others
//! announce four times the limit, which the inbound must refuse, in bursts for the
//! whole attack ([`over_limit`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bloscar::codec::CompressOptions;
use bloscar::container::stream::{blosc_segment, header_record, plain_segment_head};
use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::app::{AppStats, BEHAVIOUR, SINK};
use crate::case::Target;
use crate::raw::{Connection, MODEL_INFER, call, frame, head, status_name};

/// `BLOSCAR_MAX_MESSAGE_BYTES` of the case's sidecars.
pub const LIMIT: usize = 256 << 20;
/// Containers restoring nearly the limit, all at once.
const CONTAINERS: usize = 50;
/// Connections they are spread over.
const CONNECTIONS: usize = 5;
/// What one segment restores: the most a segment may.
const SEGMENT: usize = 4 << 20;
/// Bytes below the limit that a near-limit container restores.
const MARGIN: usize = 4096;
/// Over-limit containers sent at once.
const OVER_BURST: usize = 25;
/// How often a burst of them goes.
const OVER_EVERY: Duration = Duration::from_millis(500);

/// The start of a ModelInfer request whose one FP32 tensor of `tensor_len` bytes follows
/// in `raw_input_contents` (field 7): everything up to the tensor's first byte.
fn request_head(tensor_len: usize) -> Vec<u8> {
    let request = ModelInferRequest {
        model_name: "echo".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, (tensor_len / 4) as i64],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut head = request.encode_to_vec();
    head.push(7 << 3 | 2); // field 7, length-delimited
    prost::encoding::encode_varint(tensor_len as u64, &mut head);
    head
}

/// The records of a container that announces `announced` bytes and restores a request
/// of `restored` bytes (a tensor of zeros), each as a compressed gRPC frame.
fn container(announced: u64, restored: usize) -> Bytes {
    // The head's length depends on the tensor's through two varints: settle it.
    let mut tensor_len = restored;
    for _ in 0..3 {
        tensor_len = restored - request_head(tensor_len).len();
    }
    let head = request_head(tensor_len);
    assert_eq!(head.len() + tensor_len, restored);
    let options = CompressOptions::default();
    let full = blosc_segment(&vec![0; SEGMENT], 4, options).expect("a Blosc segment of zeros");
    let mut body = BytesMut::new();
    body.extend_from_slice(&frame(true, &header_record(announced)));
    let mut plain = plain_segment_head(&head).expect("a plain segment").to_vec();
    plain.extend_from_slice(&head);
    body.extend_from_slice(&frame(true, &plain));
    let whole = frame(true, &full);
    for _ in 0..tensor_len / SEGMENT {
        body.extend_from_slice(&whole);
    }
    let rest = tensor_len % SEGMENT;
    if rest > 0 {
        let last = blosc_segment(&vec![0; rest], 4, options).expect("a Blosc segment of zeros");
        body.extend_from_slice(&frame(true, &last));
    }
    body.freeze()
}

/// The request headers of a container sent by a peer sidecar, to the app's sink.
const HEADERS: [(&str, &str); 3] = [
    ("grpc-encoding", "bloscar"),
    ("grpc-accept-encoding", "bloscar,identity"),
    (BEHAVIOUR, SINK),
];

async fn connect(target: &Target) -> Result<Vec<Connection>, String> {
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(Connection::open(target.inbound, 4 << 20, 16 << 20).await?);
    }
    Ok(connections)
}

/// Statuses of finished calls: (status, count, when the last one ended).
type Statuses = BTreeMap<String, (u64, Duration)>;

fn describe(statuses: &Statuses) -> String {
    if statuses.is_empty() {
        return "none answered".into();
    }
    statuses
        .iter()
        .map(|(status, (n, at))| format!("{status} ×{n} (last at {:.1} s)", at.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts one call per body, spread over `connections`; waits until `deadline` at most.
/// The statuses of those that ended, and how many had not.
async fn calls(
    target: &Target,
    connections: &[Connection],
    bodies: impl Iterator<Item = Bytes>,
    start: Instant,
    deadline: tokio::time::Instant,
) -> (Statuses, usize) {
    let authority = target.inbound.to_string();
    let mut calls = tokio::task::JoinSet::new();
    for (i, body) in bodies.enumerate() {
        let send = connections[i % connections.len()].send.clone();
        let head = head(&authority, MODEL_INFER, &HEADERS);
        calls.spawn(async move {
            let answer = call(&send, head, body).await;
            (answer.map(|a| a.status), start.elapsed())
        });
    }
    let mut statuses = Statuses::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, calls.join_next()).await {
        let Ok((status, at)) = joined else {
            continue;
        };
        let status = match status {
            Ok(code) => status_name(code).to_string(),
            Err(e) => format!("failed: {e}"),
        };
        let entry = statuses.entry(status).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
    }
    let unfinished = calls.len();
    calls.abort_all();
    (statuses, unfinished)
}

/// `CONTAINERS` containers restoring nearly the limit each, all at once.
pub async fn expanding(target: Target) -> Vec<String> {
    let start = Instant::now();
    let near = container((LIMIT - MARGIN) as u64, LIMIT - MARGIN);
    let connections = match connect(&target).await {
        Ok(c) => c,
        Err(e) => return vec![format!("could not connect to the inbound: {e}")],
    };
    let deadline = tokio::time::Instant::from_std(start + target.duration);
    let bodies = std::iter::repeat_n(near.clone(), CONTAINERS);
    let (statuses, unfinished) = calls(&target, &connections, bodies, start, deadline).await;
    drop(connections);
    vec![format!(
        "{CONTAINERS} containers of {} KiB each restoring {} MiB, at once on {CONNECTIONS} \
         connections to the inbound: {}; {unfinished} still open at the end; the app read \
         {} MiB, {} requests whole",
        near.len() >> 10,
        (LIMIT - MARGIN) >> 20,
        describe(&statuses),
        AppStats::get(&target.app.sink_bytes) >> 20,
        AppStats::get(&target.app.sink_done),
    )]
}

/// Containers announcing four times the limit, `OVER_BURST` at once every
/// `OVER_EVERY`, for the attack's time.
pub async fn over_limit(target: Target) -> Vec<String> {
    let start = Instant::now();
    let over = container(4 * LIMIT as u64, LIMIT - MARGIN);
    let mut connections = match connect(&target).await {
        Ok(c) => c,
        Err(e) => return vec![format!("could not connect to the inbound: {e}")],
    };
    let mut statuses = Statuses::new();
    let mut bursts = 0;
    while start.elapsed() < target.duration {
        let burst_start = Instant::now();
        let deadline = tokio::time::Instant::from_std(burst_start + OVER_EVERY);
        let bodies = std::iter::repeat_n(over.clone(), OVER_BURST);
        let (burst, _) = calls(&target, &connections, bodies, start, deadline).await;
        for (status, (n, at)) in burst {
            let entry = statuses.entry(status).or_insert((0, at));
            entry.0 += n;
            entry.1 = entry.1.max(at);
        }
        bursts += 1;
        // A connection the inbound closed is replaced, as a peer sidecar would.
        if connections.iter().any(|c| c.driver.is_finished()) {
            match connect(&target).await {
                Ok(c) => connections = c,
                Err(e) => return vec![format!("could not reconnect to the inbound: {e}")],
            }
        }
        tokio::time::sleep_until(deadline).await;
    }
    vec![format!(
        "{bursts} bursts of {OVER_BURST} containers announcing {} MiB (4 × the limit), one \
         every {} ms: {}",
        (4 * LIMIT) >> 20,
        OVER_EVERY.as_millis(),
        describe(&statuses),
    )]
}
