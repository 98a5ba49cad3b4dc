//! The well-behaved client: callers making KServe ModelInfer unary calls with smooth
//! FP32 tensors of 64 KiB to 1 MiB through the pair while an attack runs, each echo
//! checked bit for bit, each call timed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::Channel;

use crate::app::MAX_MESSAGE;
use crate::tensors::{infer_request, smooth_fp32};

/// Concurrent callers, sharing one HTTP/2 connection as a gRPC channel does.
pub const CALLERS: usize = 4;
/// The tensor sizes the callers rotate through.
const SIZES: [usize; 5] = [64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20];
/// Each call's deadline (sent as `grpc-timeout`): a call the sidecars hold up longer
/// counts as a failure instead of hanging the client.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A caller's pause between calls: a steady load, not a saturating one, so that its
/// latency shows what the attack costs it.
const PAUSE: Duration = Duration::from_millis(10);
/// Error messages kept for the report.
const KEPT_ERRORS: usize = 3;

/// A KServe client on one HTTP/2 connection (clones share it).
pub type Client = GrpcInferenceServiceClient<Channel>;

/// Connects a KServe client to `entry`.
pub async fn connect(entry: SocketAddr) -> Result<Client, String> {
    let channel = Channel::from_shared(format!("http://{entry}"))
        .expect("a valid URI")
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect to {entry}: {e}"))?;
    Ok(GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// One unary call with `timeout` as its deadline: Ok when the echo carries the request's
/// tensors bit for bit.
pub async fn checked_call(
    client: &mut Client,
    request: &ModelInferRequest,
    timeout: Duration,
) -> Result<(), String> {
    let mut call = tonic::Request::new(request.clone());
    call.set_timeout(timeout);
    // The client's own bound, a little after the deadline the sidecars enforce.
    let response = tokio::time::timeout(timeout + Duration::from_secs(2), client.model_infer(call))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs() + 2))?
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
        .into_inner();
    let shapes_match = response.outputs.len() == request.inputs.len()
        && response
            .outputs
            .iter()
            .zip(&request.inputs)
            .all(|(o, i)| o.name == i.name && o.datatype == i.datatype && o.shape == i.shape);
    if !shapes_match {
        return Err("the echoed tensor descriptions differ from the ones sent".into());
    }
    if response.raw_output_contents != request.raw_input_contents {
        return Err("the echoed tensor bytes differ from the ones sent".into());
    }
    Ok(())
}

/// What one caller saw.
#[derive(Default)]
struct Log {
    latencies: Vec<Duration>,
    failures: u64,
    errors: Vec<String>,
    /// When failed calls ended, from the start of the callers: the first and the last.
    failed_between: Option<(Duration, Duration)>,
}

impl Log {
    fn failed_at(&mut self, error: String, at: Duration) {
        self.failed_between = Some(match self.failed_between {
            None => (at, at),
            Some((first, last)) => (first.min(at), last.max(at)),
        });
        self.failed(error);
    }

    fn failed(&mut self, error: String) {
        self.failures += 1;
        if self.errors.len() < KEPT_ERRORS && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }
}

/// The well-behaved client's figures over one case.
#[derive(Clone, Debug, Default)]
pub struct ClientReport {
    /// Calls made (successes and failures).
    pub calls: u64,
    /// Calls that failed or whose echo differed.
    pub failures: u64,
    /// Up to three distinct failure messages.
    pub errors: Vec<String>,
    /// When the first and the last failed call ended, counted from the start of the
    /// callers (which is when the attack starts).
    pub failed_between: Option<(Duration, Duration)>,
    /// Median time of the successful calls.
    pub p50: Option<Duration>,
    /// 99th percentile of the same.
    pub p99: Option<Duration>,
    /// The slowest successful call.
    pub max: Option<Duration>,
}

/// The `p` quantile (0..=1) of sorted `samples`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * p).round() as usize])
}

/// The callers, running.
pub struct WellBehaved {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Log>>,
}

impl WellBehaved {
    /// Connects to `entry`, checks one call of every size, then starts the callers.
    pub async fn start(entry: SocketAddr) -> Result<WellBehaved, String> {
        let mut client = connect(entry).await?;
        let requests: Arc<Vec<ModelInferRequest>> = Arc::new(
            SIZES
                .iter()
                .enumerate()
                .map(|(i, &size)| infer_request(smooth_fp32(size, 100 + i as u32)))
                .collect(),
        );
        for request in requests.iter() {
            checked_call(&mut client, request, CALL_TIMEOUT)
                .await
                .map_err(|e| format!("warm-up call: {e}"))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let origin = Instant::now();
        let tasks = (0..CALLERS)
            .map(|caller| {
                let (mut client, requests, stop) = (client.clone(), requests.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut log = Log::default();
                    let mut next = caller;
                    while !stop.load(Ordering::Relaxed) {
                        let request = &requests[next % requests.len()];
                        next += 1;
                        let start = Instant::now();
                        match checked_call(&mut client, request, CALL_TIMEOUT).await {
                            Ok(()) => log.latencies.push(start.elapsed()),
                            Err(e) => log.failed_at(e, origin.elapsed()),
                        }
                        tokio::time::sleep(PAUSE).await;
                    }
                    log
                })
            })
            .collect();
        Ok(WellBehaved { stop, tasks })
    }

    /// Stops the callers (each finishes its call in progress) and sums up.
    pub async fn finish(self) -> ClientReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        let mut report = ClientReport::default();
        for task in self.tasks {
            let log = task.await.unwrap_or_else(|_| {
                let mut log = Log::default();
                log.failed("caller task panicked".into());
                log
            });
            report.calls += log.latencies.len() as u64 + log.failures;
            report.failures += log.failures;
            if let Some((first, last)) = log.failed_between {
                report.failed_between = Some(match report.failed_between {
                    None => (first, last),
                    Some((f, l)) => (f.min(first), l.max(last)),
                });
            }
            for error in log.errors {
                if report.errors.len() < KEPT_ERRORS && !report.errors.contains(&error) {
                    report.errors.push(error);
                }
            }
            latencies.extend(log.latencies);
        }
        latencies.sort();
        report.p50 = percentile(&latencies, 0.5);
        report.p99 = percentile(&latencies, 0.99);
        report.max = latencies.last().copied();
        report
    }
}
