//! The soak: a mixed, steady load through one pair for many minutes (unary ModelInfer
//! calls and ModelStreamInfer streams, tensors from 1 KiB to 64 MiB, smooth and random),
//! every answer checked bit for bit, each sidecar's RSS sampled every 10 s. The trend of
//! the samples says whether the sidecars' memory grows with time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bloscar::pb::inference::ModelInferRequest;

use crate::app::App;
use crate::case::Context;
use crate::client::{Client, checked_call, connect};
use crate::cpu::cpu_seconds;
use crate::memory::{Reading, Sampler, hwm_kib, mib};
use crate::pair::{Launch, Pair};
use crate::tensors::{infer_request, random_bytes, smooth_fp32};

/// How often the sidecars' RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Callers of unary calls, each on its own connection.
const UNARY_CALLERS: usize = 3;
/// Callers of streams.
const STREAM_CALLERS: usize = 1;
/// Requests per stream.
const STREAM_MESSAGES: usize = 8;
/// A caller's pause between calls: steady load, not saturation.
const PAUSE: Duration = Duration::from_millis(20);
/// A call's deadline: generous, a 64 MiB call on a busy machine takes seconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The windows whose mean RSS is compared: the first and the last this long.
const WINDOW: Duration = Duration::from_secs(300);
/// Powers of two of the tensor sizes: 1 KiB << 0 ..= 1 KiB << 16 (64 MiB).
const SIZE_STEPS: u32 = 17;
/// Random (incompressible) tensors are made up to this size.
const RANDOM_UP_TO: usize = 4 << 20;

/// A xorshift32 generator: which tensor each call sends.
struct Pick(u32);

impl Pick {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 as usize % below
    }
}

/// Every request the soak sends: smooth tensors of each size, and random ones up to
/// [`RANDOM_UP_TO`]. Sizes are a power of two plus a few elements, so that chunk
/// boundaries fall anywhere.
fn requests() -> Vec<Arc<ModelInferRequest>> {
    let mut out = Vec::new();
    for step in 0..SIZE_STEPS {
        let size = (1usize << 10 << step) + 4 * step as usize;
        out.push(Arc::new(infer_request(smooth_fp32(size, 1000 + step))));
        if size <= RANDOM_UP_TO {
            out.push(Arc::new(infer_request(random_bytes(
                size & !3,
                2000 + step,
            ))));
        }
    }
    out
}

/// What the callers did.
#[derive(Default)]
struct Tally {
    unary: u64,
    streams: u64,
    stream_messages: u64,
    bytes: u64,
    failures: u64,
    errors: Vec<String>,
}

impl Tally {
    fn failed(&mut self, error: String) {
        self.failures += 1;
        if self.errors.len() < 3 && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    fn add(&mut self, other: Tally) {
        self.unary += other.unary;
        self.streams += other.streams;
        self.stream_messages += other.stream_messages;
        self.bytes += other.bytes;
        self.failures += other.failures;
        for error in other.errors {
            if self.errors.len() < 3 && !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
    }
}

async fn unary_caller(
    mut client: Client,
    requests: Arc<Vec<Arc<ModelInferRequest>>>,
    seed: u32,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut pick = Pick(seed);
    while !stop.load(Ordering::Relaxed) {
        let request = &requests[pick.next(requests.len())];
        match checked_call(&mut client, request, CALL_TIMEOUT).await {
            Ok(()) => {
                tally.unary += 1;
                tally.bytes += 2 * request.raw_input_contents[0].len() as u64;
            }
            Err(e) => tally.failed(format!("unary: {e}")),
        }
        tokio::time::sleep(PAUSE).await;
    }
    tally
}

/// One ModelStreamInfer stream of `requests`: Ok when every answer echoes its request.
async fn stream_call(client: &mut Client, requests: Vec<ModelInferRequest>) -> Result<u64, String> {
    let mut call = tonic::Request::new(futures_util::stream::iter(requests.clone()));
    call.set_timeout(CALL_TIMEOUT);
    let mut answers = client
        .model_stream_infer(call)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut bytes = 0;
    for (i, request) in requests.iter().enumerate() {
        let answer = answers
            .message()
            .await
            .map_err(|s| format!("message {i}: {:?}: {}", s.code(), s.message()))?
            .ok_or_else(|| format!("the stream ended after {i} of {} answers", requests.len()))?;
        let response = answer
            .infer_response
            .ok_or_else(|| format!("answer {i} without a response: {}", answer.error_message))?;
        if response.raw_output_contents != request.raw_input_contents {
            return Err(format!("answer {i} differs from its request"));
        }
        bytes += 2 * request.raw_input_contents[0].len() as u64;
    }
    if answers
        .message()
        .await
        .map_err(|s| format!("after the last answer: {s}"))?
        .is_some()
    {
        return Err("more answers than requests".into());
    }
    Ok(bytes)
}

async fn stream_caller(
    mut client: Client,
    requests: Arc<Vec<Arc<ModelInferRequest>>>,
    seed: u32,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut pick = Pick(seed);
    // Streams carry tensors up to 16 MiB: eight of them are in flight at once.
    let small: Vec<&Arc<ModelInferRequest>> = requests
        .iter()
        .filter(|r| r.raw_input_contents[0].len() <= 16 << 20)
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<ModelInferRequest> = (0..STREAM_MESSAGES)
            .map(|_| ModelInferRequest::clone(small[pick.next(small.len())]))
            .collect();
        match stream_call(&mut client, batch).await {
            Ok(bytes) => {
                tally.streams += 1;
                tally.stream_messages += STREAM_MESSAGES as u64;
                tally.bytes += bytes;
            }
            Err(e) => tally.failed(format!("stream: {e}")),
        }
        tokio::time::sleep(PAUSE).await;
    }
    tally
}

/// Mean RSS (MiB) of process `index` over the readings within `from..to`.
fn mean_mib(readings: &[Reading], index: usize, from: Duration, to: Duration) -> f64 {
    let inside: Vec<f64> = readings
        .iter()
        .filter(|r| r.at >= from && r.at <= to)
        .map(|r| r.rss_kib[index] as f64 / 1024.0)
        .collect();
    inside.iter().sum::<f64>() / inside.len().max(1) as f64
}

/// The least-squares slope of process `index`'s RSS over time, MiB per hour.
fn slope_mib_per_hour(readings: &[Reading], index: usize) -> f64 {
    let n = readings.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let xs: Vec<f64> = readings
        .iter()
        .map(|r| r.at.as_secs_f64() / 3600.0)
        .collect();
    let ys: Vec<f64> = readings
        .iter()
        .map(|r| r.rss_kib[index] as f64 / 1024.0)
        .collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let covariance: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let variance: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

/// Runs the soak for `minutes` and prints its tables.
pub async fn run(context: &Context, minutes: u64) {
    let duration = Duration::from_secs(60 * minutes);
    eprintln!("soak: making the tensors...");
    let requests = Arc::new(requests());
    let app = App::start(None).await;
    let launch = Launch {
        env: context.env.clone(),
        open_files: None,
    };
    let pair = Pair::start(
        &context.bloscar,
        app.addr,
        &launch,
        &launch,
        &context.log_root.join("soak"),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..UNARY_CALLERS + STREAM_CALLERS {
        let client = match connect(pair.listen).await {
            Ok(c) => c,
            Err(e) => {
                println!("soak: could not connect: {e}");
                return;
            }
        };
        let (requests, stop) = (requests.clone(), stop.clone());
        let seed = 7 + i as u32;
        if i < UNARY_CALLERS {
            callers.spawn(unary_caller(client, requests, seed, stop));
        } else {
            callers.spawn(stream_caller(client, requests, seed, stop));
        }
    }
    let pids = pair.pids();
    // The first reading is taken once the load has run for one interval, not idle.
    tokio::time::sleep(SAMPLE_EVERY).await;
    let cpu_before = pids.map(cpu_seconds);
    let sampler = Sampler::start(pids, SAMPLE_EVERY, context.floor_kib);
    let tripped = sampler.tripped();
    eprintln!(
        "soak: {minutes} min of mixed load, RSS every {} s...",
        SAMPLE_EVERY.as_secs()
    );
    let start = Instant::now();
    let aborted = tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = tripped => true,
    };
    let elapsed = start.elapsed();
    let cpu = [0, 1].map(|i| cpu_seconds(pids[i]) - cpu_before[i]);
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    while let Some(joined) = callers.join_next().await {
        match joined {
            Ok(t) => tally.add(t),
            Err(_) => tally.failed("a caller task panicked".into()),
        }
    }
    let hwm = pids.map(|pid| hwm_kib(pid).unwrap_or(0));
    let (readings, _) = sampler.finish().await;
    print_soak(
        &readings,
        &tally,
        Measured {
            elapsed,
            hwm,
            cpu,
            aborted,
        },
        context.floor_kib,
    );
}

/// What the soak measured besides the callers' tally and the readings.
struct Measured {
    elapsed: Duration,
    hwm: [u64; 2],
    cpu: [f64; 2],
    aborted: bool,
}

fn print_soak(readings: &[Reading], tally: &Tally, measured: Measured, floor_kib: u64) {
    let Measured {
        elapsed,
        hwm,
        cpu,
        aborted,
    } = measured;
    println!();
    if aborted {
        println!(
            "**The soak stopped early: available memory fell below {} MiB.**",
            floor_kib / 1024
        );
        println!();
    }
    println!(
        "Soak: {:.1} min; {} unary calls, {} streams of {STREAM_MESSAGES} messages ({} \
         messages), {:.1} GiB of tensors through the pair (requests and answers); \
         failures: {}{}.",
        elapsed.as_secs_f64() / 60.0,
        tally.unary,
        tally.streams,
        tally.stream_messages,
        tally.bytes as f64 / (1u64 << 30) as f64,
        tally.failures,
        if tally.errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", tally.errors.join(" | "))
        },
    );
    // The first and last windows: 5 minutes, or a third of a shorter soak.
    let window = WINDOW.min(elapsed / 3);
    let end = readings.last().map_or(Duration::ZERO, |r| r.at);
    println!();
    println!(
        "| sidecar | mean RSS, first {:.1} min (MiB) | mean RSS, last {:.1} min (MiB) | \
         least-squares slope (MiB/hour) | VmHWM (MiB) | CPU (s) |",
        window.as_secs_f64() / 60.0,
        window.as_secs_f64() / 60.0,
    );
    println!("|---|---|---|---|---|---|");
    for (i, role) in ["outbound", "inbound"].into_iter().enumerate() {
        println!(
            "| {role} | {:.1} | {:.1} | {:+.1} | {} | {:.0} |",
            mean_mib(readings, i, Duration::ZERO, window),
            mean_mib(readings, i, end.saturating_sub(window), end),
            slope_mib_per_hour(readings, i),
            mib(hwm[i]),
            cpu[i],
        );
    }
    println!();
    println!(
        "RSS samples (MiB, one every {} s from {} s into the load; a row per minute):",
        SAMPLE_EVERY.as_secs(),
        SAMPLE_EVERY.as_secs()
    );
    println!();
    println!("| minute | outbound | inbound |");
    println!("|---|---|---|");
    let per_row = (60 / SAMPLE_EVERY.as_secs()).max(1) as usize;
    for (minute, row) in readings.chunks(per_row).enumerate() {
        let column = |i: usize| {
            row.iter()
                .map(|r| format!("{:.0}", r.rss_kib[i] as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("| {minute} | {} | {} |", column(0), column(1));
    }
}
