//! Benchmark of a bloscar sidecar pair on loopback (run by `scripts/bench-proxy.sh`).
//!
//! Starts a KServe v2 echo server in this process and two real `bloscar` processes, an
//! outbound and an inbound sidecar, then measures, in one run:
//! - the latency of a 1 KiB unary call, direct and through the pair (p50/p99);
//! - the time of a 4 MiB FP32 tensor call (request and echoed response), direct and
//!   through the pair;
//! - each sidecar's resident memory when idle and its peak under 64 concurrent
//!   bidirectional streams (from `/proc/<pid>/status`).
//!
//! Calls alternate between the direct and the proxied path so that both see the same
//! machine load. Usage: `bench_proxy [--bloscar PATH] [--codec SETTING]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bloscar::pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use bloscar::pb::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::pb::inference::model_infer_response::InferOutputTensor;
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use futures_util::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

const MAX_MESSAGE: usize = 64 << 20;
const SMALL_CALLS: usize = 2000;
const LARGE_CALLS: usize = 30;
const WARMUP_CALLS: usize = 100;
const STREAMS: usize = 64;
const STREAM_MESSAGES: usize = 16;
const STREAM_TENSOR_BYTES: usize = 1 << 20;

type Client = GrpcInferenceServiceClient<Channel>;
type ResponseStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>,
>;

/// Echoes each request's tensors back as outputs.
struct Echo;

fn echo(request: ModelInferRequest) -> ModelInferResponse {
    ModelInferResponse {
        model_name: request.model_name,
        id: request.id,
        outputs: request
            .inputs
            .into_iter()
            .map(|input| InferOutputTensor {
                name: input.name,
                datatype: input.datatype,
                shape: input.shape,
                ..Default::default()
            })
            .collect(),
        raw_output_contents: request.raw_input_contents,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        Ok(Response::new(echo(request.into_inner())))
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let stream = request.into_inner().map(|request| {
            request.map(|request| ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(echo(request)),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A smooth image-like FP32 tensor with a little noise, `bytes` long.
fn fp32_tensor(bytes: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..bytes / 4)
        .flat_map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 1000) as f32 / 1000.0 - 0.5;
            let (x, y) = ((i % 1024) as f32, (i / 1024) as f32);
            let value = 100.0 * ((x * 0.01).sin() + (y * 0.013).cos()) + noise;
            value.to_le_bytes()
        })
        .collect()
}

fn infer_request(tensor: Vec<u8>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "echo".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, (tensor.len() / 4) as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![tensor],
        ..Default::default()
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// One sidecar process and its admin address.
struct Sidecar {
    name: &'static str,
    child: Child,
    admin: SocketAddr,
}

impl Sidecar {
    fn start(name: &'static str, bloscar: &PathBuf, env: &[(&str, String)]) -> Sidecar {
        let admin = free_addr();
        let child = Command::new(bloscar)
            .env_clear()
            .env("BLOSCAR_ADMIN_LISTEN", admin.to_string())
            .env("BLOSCAR_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bloscar.display()));
        Sidecar { name, child, admin }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("{} sidecar exited: {status}", self.name);
            }
            if ready(self.admin).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} sidecar never became ready", self.name);
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One bare HTTP/1.1 GET to an admin listener: the whole response, or "" on failure.
async fn admin_get(admin: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Whether the admin listener answers `/ready` with 200.
async fn ready(admin: SocketAddr) -> bool {
    admin_get(admin, "/ready").await.starts_with("HTTP/1.1 200")
}

/// Message bytes of unary ModelInfer calls the outbound sidecar has seen so far, both
/// directions: (as the apps exchanged them, as they crossed between the sidecars).
async fn model_infer_bytes(outbound_admin: SocketAddr) -> (f64, f64) {
    let metrics = admin_get(outbound_admin, "/metrics").await;
    let sum = |family: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| {
                line.starts_with(family)
                    && line.contains("method=\"/inference.GRPCInferenceService/ModelInfer\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("bloscar_message_bytes_before_total{"),
        sum("bloscar_message_bytes_after_total{"),
    )
}

async fn connect(addr: SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect");
    GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Time of one unary call; checks the echo is exact.
async fn timed_call(client: &mut Client, request: &ModelInferRequest) -> Duration {
    let start = Instant::now();
    let response = client
        .model_infer(request.clone())
        .await
        .expect("call succeeds")
        .into_inner();
    let elapsed = start.elapsed();
    assert!(
        response.raw_output_contents == request.raw_input_contents,
        "the echoed tensor differs from the one sent"
    );
    elapsed
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank]
}

/// Alternates calls on the two paths; returns the samples of each.
async fn compare(
    direct: &mut Client,
    proxied: &mut Client,
    request: &ModelInferRequest,
    calls: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut a = Vec::with_capacity(calls);
    let mut b = Vec::with_capacity(calls);
    for _ in 0..calls {
        a.push(timed_call(direct, request).await);
        b.push(timed_call(proxied, request).await);
    }
    (a, b)
}

/// 64 bidirectional streams at once, each sending tensors in lock-step with the echo.
async fn stream_load(addr: SocketAddr) -> u64 {
    let moved = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let moved = moved.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(addr).await;
            let (tx, rx) = tokio::sync::mpsc::channel::<ModelInferRequest>(1);
            let outbound = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|message| (message, rx))
            });
            let first = infer_request(fp32_tensor(STREAM_TENSOR_BYTES, s as u32));
            tx.send(first.clone()).await.expect("stream open");
            let mut responses = client
                .model_stream_infer(outbound)
                .await
                .expect("stream starts")
                .into_inner();
            for m in 0..STREAM_MESSAGES {
                let response = responses
                    .next()
                    .await
                    .expect("a response")
                    .expect("an OK response");
                let echoed = response.infer_response.expect("a response message");
                assert!(echoed.raw_output_contents == first.raw_input_contents);
                moved.fetch_add(2 * STREAM_TENSOR_BYTES as u64, Ordering::Relaxed);
                if m + 1 < STREAM_MESSAGES {
                    tx.send(first.clone()).await.expect("stream open");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("stream task");
    }
    moved.load(Ordering::Relaxed)
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn signed_micros(a: Duration, b: Duration) -> String {
    format!("{:+.0} µs", (b.as_secs_f64() - a.as_secs_f64()) * 1e6)
}

fn signed_millis(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (b.as_secs_f64() - a.as_secs_f64()) * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut bloscar = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bloscar")))
        .unwrap_or_else(|| PathBuf::from("bloscar"));
    let mut codec = String::from("auto");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bloscar" => bloscar = args.next().expect("--bloscar PATH").into(),
            "--codec" => codec = args.next().expect("--codec SETTING"),
            other => {
                eprintln!("usage: bench_proxy [--bloscar PATH] [--codec SETTING]; got {other}");
                std::process::exit(2);
            }
        }
    }

    let server_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    let server = server_listener.local_addr().expect("server address");
    tokio::spawn(
        tonic::transport::Server::builder().serve_with_incoming(
            GrpcInferenceServiceServer::new(Echo)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            // Like the sidecars (and most gRPC servers), no Nagle delay on small writes.
            tonic::transport::server::TcpIncoming::from(server_listener).with_nodelay(Some(true)),
        ),
    );

    let inbound_addr = free_addr();
    let outbound_addr = free_addr();
    let mut inbound = Sidecar::start(
        "inbound",
        &bloscar,
        &[
            ("BLOSCAR_MODE", "inbound".into()),
            ("BLOSCAR_INBOUND_LISTEN", inbound_addr.to_string()),
            ("BLOSCAR_INBOUND_FORWARD", server.to_string()),
            ("BLOSCAR_CODEC", codec.clone()),
        ],
    );
    let mut outbound = Sidecar::start(
        "outbound",
        &bloscar,
        &[
            ("BLOSCAR_MODE", "outbound".into()),
            ("BLOSCAR_OUTBOUND_LISTEN", outbound_addr.to_string()),
            ("BLOSCAR_OUTBOUND_FORWARD", inbound_addr.to_string()),
            ("BLOSCAR_CODEC", codec.clone()),
        ],
    );
    inbound.wait_ready().await;
    outbound.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = [inbound.memory(), outbound.memory()];

    let mut direct = connect(server).await;
    let mut proxied = connect(outbound_addr).await;

    eprintln!("1 KiB unary calls ({SMALL_CALLS} per path)...");
    let small = infer_request(fp32_tensor(1024, 1));
    compare(&mut direct, &mut proxied, &small, WARMUP_CALLS).await;
    let (mut small_direct, mut small_proxied) =
        compare(&mut direct, &mut proxied, &small, SMALL_CALLS).await;

    eprintln!("4 MiB FP32 unary calls ({LARGE_CALLS} per path)...");
    let large = infer_request(fp32_tensor(4 << 20, 2));
    compare(&mut direct, &mut proxied, &large, 3).await;
    let bytes_before = model_infer_bytes(outbound.admin).await;
    let (mut large_direct, mut large_proxied) =
        compare(&mut direct, &mut proxied, &large, LARGE_CALLS).await;
    let bytes_after = model_infer_bytes(outbound.admin).await;
    let per_call = |i: usize| {
        let (a, b) = (bytes_before, bytes_after);
        let delta = if i == 0 { b.0 - a.0 } else { b.1 - a.1 };
        delta / LARGE_CALLS as f64 / (1 << 20) as f64
    };
    let (app_mib, link_mib) = (per_call(0), per_call(1));

    eprintln!("{STREAMS} concurrent streams of {STREAM_MESSAGES} x 1 MiB FP32 through the pair...");
    let sampling = Arc::new(std::sync::Mutex::new([0u64; 2]));
    let (stop_sampling, mut stopped) = tokio::sync::watch::channel(false);
    let pids = [inbound.child.id(), outbound.child.id()];
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            loop {
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(rss) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("VmRSS:"))
                                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        })
                    {
                        let mut max = sampling.lock().unwrap();
                        max[i] = max[i].max(rss);
                    }
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
    };
    let load_start = Instant::now();
    let moved = stream_load(outbound_addr).await;
    let load_time = load_start.elapsed();
    let _ = stop_sampling.send(true);
    let _ = sampler.await;
    let sampled = *sampling.lock().unwrap();
    let loaded = [inbound.memory(), outbound.memory()];

    let p = |v: &mut Vec<Duration>, q| percentile(v, q);
    let (sd50, sp50) = (p(&mut small_direct, 0.5), p(&mut small_proxied, 0.5));
    let (sd99, sp99) = (p(&mut small_direct, 0.99), p(&mut small_proxied, 0.99));
    let (ld50, lp50) = (p(&mut large_direct, 0.5), p(&mut large_proxied, 0.5));
    let (ld99, lp99) = (p(&mut large_direct, 0.99), p(&mut large_proxied, 0.99));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "bloscar sidecar pair on loopback, codec {codec}, {cores} cores; client, server and \
         both sidecars on the same machine"
    );
    println!();
    println!("| call | direct | through the pair | added |");
    println!("|---|---|---|---|");
    println!(
        "| 1 KiB FP32 unary, p50 ({SMALL_CALLS} calls) | {} | {} | {} |",
        micros(sd50),
        micros(sp50),
        signed_micros(sd50, sp50)
    );
    println!(
        "| 1 KiB FP32 unary, p99 | {} | {} | {} |",
        micros(sd99),
        micros(sp99),
        signed_micros(sd99, sp99)
    );
    println!(
        "| 4 MiB FP32 unary (request + echo), p50 ({LARGE_CALLS} calls) | {} | {} | {} |",
        millis(ld50),
        millis(lp50),
        signed_millis(ld50, lp50)
    );
    println!(
        "| 4 MiB FP32 unary, p99 | {} | {} | {} |",
        millis(ld99),
        millis(lp99),
        signed_millis(ld99, lp99)
    );
    println!(
        "| 4 MiB FP32 unary, message bytes per call between the sidecars | {app_mib:.2} MiB | \
         {link_mib:.2} MiB | ratio {:.2} |",
        app_mib / link_mib
    );
    println!();
    println!(
        "| sidecar process | RSS idle | peak RSS under {STREAMS} streams (VmHWM) | highest RSS sampled |"
    );
    println!("|---|---|---|---|");
    for (i, name) in ["inbound", "outbound"].iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} |",
            mib(idle[i].0),
            mib(loaded[i].1),
            mib(sampled[i])
        );
    }
    println!();
    println!(
        "Load: {STREAMS} bidirectional streams x {STREAM_MESSAGES} messages of 1 MiB FP32 each \
         way, {:.0} MiB echoed in {:.2} s.",
        moved as f64 / (1 << 20) as f64,
        load_time.as_secs_f64()
    );
}
