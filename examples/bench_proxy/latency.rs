//! Unary calls through each path, interleaved so that every path sees the same machine
//! load: latency percentiles of single calls, and calls per second of many concurrent
//! callers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::Channel;

use crate::echo::MAX_MESSAGE;

/// A KServe client on one HTTP/2 connection (clones share it).
pub type Client = GrpcInferenceServiceClient<Channel>;

/// One way from the benchmark to the echo server: direct or through a proxy pair.
pub struct Path {
    /// What the path goes through, as the tables name it.
    pub label: String,
    /// A client connected to the path's entry.
    pub client: Client,
}

impl Path {
    /// Connects to `entry`.
    pub async fn connect(label: impl Into<String>, entry: SocketAddr) -> Path {
        let channel = Channel::from_shared(format!("http://{entry}"))
            .expect("a valid URI")
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {entry}: {e}"));
        Path {
            label: label.into(),
            client: GrpcInferenceServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        }
    }
}

/// One unary call; panics unless the echo equals the request's tensor bit for bit.
async fn checked_call(client: &mut Client, request: &ModelInferRequest) {
    let response = client
        .model_infer(request.clone())
        .await
        .expect("call succeeds")
        .into_inner();
    assert!(
        response.raw_output_contents == request.raw_input_contents,
        "the echoed tensor differs from the one sent"
    );
}

/// `calls` rounds of one call on each path in turn; each path's call times.
pub async fn interleaved(
    paths: &mut [Path],
    request: &ModelInferRequest,
    calls: usize,
) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::with_capacity(calls); paths.len()];
    for _ in 0..calls {
        for (path, samples) in paths.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            checked_call(&mut path.client, request).await;
            samples.push(start.elapsed());
        }
    }
    samples
}

/// The `p` quantile (0..=1) of `samples`, nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank]
}

/// Calls per second on each path with `callers` concurrent callers sharing the path's
/// connection: `rounds` rounds of `slice` on each path in turn.
pub async fn throughput(
    paths: &[Path],
    request: &ModelInferRequest,
    callers: usize,
    slice: Duration,
    rounds: usize,
) -> Vec<f64> {
    let mut calls = vec![0u64; paths.len()];
    let mut busy = vec![Duration::ZERO; paths.len()];
    for _ in 0..rounds {
        for (i, path) in paths.iter().enumerate() {
            let (done, elapsed) = saturate(&path.client, request, callers, slice).await;
            calls[i] += done;
            busy[i] += elapsed;
        }
    }
    calls
        .iter()
        .zip(&busy)
        .map(|(&n, t)| n as f64 / t.as_secs_f64())
        .collect()
}

/// `callers` tasks calling in a loop for `slice`: the calls completed and the time from
/// the start until the last one finished.
async fn saturate(
    client: &Client,
    request: &ModelInferRequest,
    callers: usize,
    slice: Duration,
) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (mut client, request) = (client.clone(), request.clone());
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    checked_call(&mut client, &request).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(slice).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("caller task");
    }
    (done.load(Ordering::Relaxed), start.elapsed())
}
