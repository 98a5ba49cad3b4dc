//! `bloscar demo`: the whole picture in one process on loopback.
//!
//! ```text
//!  client ──────────────── throttled link ─────────────────────────────── echo model
//!  client ── outbound ──── throttled link (same bandwidth) ── inbound ── echo model
//! ```
//!
//! An identity model (KServe v2 ModelInfer echo), both sidecars, two links throttled to
//! the same bandwidth (one direct, one between the sidecars) and a client that sends
//! realistic tensors both ways and checks every response bit for bit, over gRPC and over
//! HTTP/1.1 (KServe v2 REST with the binary tensor extension). Prints the bytes each
//! link carried, latency and the codec chosen per tensor and protocol.

mod grpc;
mod kserve;
mod link;
mod recording;
mod report;
mod rest;
mod tensors;

use std::future::pending;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bloscar::Chooser;
use bloscar::codec::tune::Tuner;
use bloscar::config::{CodecSetting, Config};
use bloscar::layer::{Role, UnknownPeer};
use bloscar::metrics::Metrics;
use bloscar::proxy::{self, ProxySettings};
use tokio::net::TcpListener;

use self::grpc::Client;
use self::link::Link;
use self::recording::Recording;
use self::report::Row;

/// Options of `bloscar demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Bandwidth of the simulated link between the pods, Mbit/s each way.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub bandwidth_mbps: f64,
    /// Sidecars' setting: auto, or codec[:level[:shuffle]], e.g. lz4:5:byte.
    #[arg(long, default_value = "auto")]
    pub codec: String,
    /// Timed calls per tensor and path, after one untimed warm-up call.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Multiplies every tensor's batch size (at least one item each).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub scale: f64,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// Runs the demo; the exit status says whether every response was bit-exact.
pub fn main(args: DemoArgs) -> ExitCode {
    // The sidecars' warnings and errors go to stderr; BLOSCAR_LOG overrides the filter.
    let filter = tracing_subscriber::EnvFilter::try_from_env("BLOSCAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bloscar demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(rows) => {
            println!("{}", report::table(&rows, &args));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bloscar demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The sidecars' configuration, read from the same variables the sidecar reads.
fn demo_config(args: &DemoArgs) -> Result<Config, String> {
    let vars = [
        ("BLOSCAR_MODE", "both".to_owned()),
        ("BLOSCAR_OUTBOUND_FORWARD", "127.0.0.1:9".to_owned()),
        ("BLOSCAR_CODEC", args.codec.clone()),
        ("BLOSCAR_LINK_MBPS", args.bandwidth_mbps.to_string()),
    ];
    Config::from_vars(vars.into_iter().map(|(k, v)| (k.to_owned(), v))).map_err(|e| e.to_string())
}

async fn bind() -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind a loopback port: {e}"))
}

async fn run(args: &DemoArgs) -> Result<Vec<Row>, String> {
    let config = demo_config(args)?;
    // The auto setting's first search of each tensor runs in the background; the demo
    // waits for it after the warm-up call, so that the timed calls show the pick.
    let tuner =
        matches!(config.codec, CodecSetting::Auto).then(|| bloscar::sidecar::tuner(&config));
    let base: Arc<dyn Chooser> = match &tuner {
        Some(tuner) => tuner.clone(),
        None => bloscar::sidecar::chooser(&config),
    };
    let chooser = Arc::new(Recording::new(base));
    let codec = Arc::new(bloscar::sidecar::message_codec(&config, chooser.clone()));
    let metrics = Arc::new(Metrics::new());
    let memory = bloscar::sidecar::memory_budget(&config);
    let settings = |role, forward: String| ProxySettings {
        role,
        forward,
        codec: codec.clone(),
        max_message_bytes: config.max_message_bytes,
        max_http_body_bytes: config.max_http_body_bytes,
        unknown_peer: UnknownPeer::Identity,
        resolve: Default::default(),
        stream_idle_timeout: config.stream_idle_timeout,
        limits: bloscar::sidecar::listener_limits(&config),
        memory: memory.clone(),
        hop_tls: Default::default(),
    };

    eprintln!(
        "bloscar demo: echo model, two sidecars and two {} Mbit/s links on loopback (codec {})",
        args.bandwidth_mbps, args.codec
    );
    let echo = bind().await?;
    let echo_addr = echo.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(grpc::serve_echo(echo));
    let direct =
        Link::start(bind().await?, echo_addr, args.bandwidth_mbps).map_err(|e| e.to_string())?;

    let inbound = bind().await?;
    let inbound_addr = inbound.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(proxy::serve(
        inbound,
        settings(Role::Inbound, echo_addr.to_string()),
        metrics.clone(),
        pending(),
        Duration::from_secs(1),
    ));
    let between =
        Link::start(bind().await?, inbound_addr, args.bandwidth_mbps).map_err(|e| e.to_string())?;
    let outbound = bind().await?;
    let outbound_addr = outbound.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(proxy::serve(
        outbound,
        settings(Role::Outbound, between.addr().to_string()),
        metrics.clone(),
        pending(),
        Duration::from_secs(1),
    ));

    let mut direct_client = Client::connect(direct.addr())
        .await
        .map_err(|e| e.to_string())?;
    let mut bloscar_client = Client::connect(outbound_addr)
        .await
        .map_err(|e| e.to_string())?;

    let mut direct_http = rest::Client::connect(direct.addr()).await?;
    let mut bloscar_http = rest::Client::connect(outbound_addr).await?;

    let all = tensors::all(args.scale);
    let mut rows = Vec::new();
    for (i, tensor) in all.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} ({:.1} MB): direct...",
            i + 1,
            all.len(),
            tensor.label,
            tensor.data.len() as f64 / 1e6
        );
        let request = kserve::infer_request("echo", &i.to_string(), tensor);
        let expected = kserve::echo_response(&request).map_err(|e| e.to_string())?;
        let direct_run = measure(
            Call::Grpc {
                client: &mut direct_client,
                request: &request,
                expected: &expected,
            },
            &direct,
            args.rounds,
            None,
        )
        .await?;
        eprintln!(
            "[{}/{}] {}: through bloscar...",
            i + 1,
            all.len(),
            tensor.label
        );
        let bloscar_run = measure(
            Call::Grpc {
                client: &mut bloscar_client,
                request: &request,
                expected: &expected,
            },
            &between,
            args.rounds,
            tuner.clone(),
        )
        .await?;
        rows.push(Row {
            label: tensor.label.to_owned(),
            tensor_bytes: tensor.data.len() as u64,
            direct: direct_run,
            bloscar: bloscar_run,
            codec: chooser.pick(tensor.name),
        });
        eprintln!(
            "[{}/{}] {} over HTTP: direct, then through bloscar...",
            i + 1,
            all.len(),
            tensor.label
        );
        // Its own model name: the tuner keys its choices by model, so the REST row
        // shows the REST call's own pick.
        let model = format!("echo-http-{i}");
        let direct_run = measure(
            Call::Rest {
                client: &mut direct_http,
                model: &model,
                tensor,
            },
            &direct,
            args.rounds,
            None,
        )
        .await?;
        let bloscar_run = measure(
            Call::Rest {
                client: &mut bloscar_http,
                model: &model,
                tensor,
            },
            &between,
            args.rounds,
            tuner.clone(),
        )
        .await?;
        rows.push(Row {
            label: format!("{} (HTTP)", tensor.label),
            tensor_bytes: tensor.data.len() as u64,
            direct: direct_run,
            bloscar: bloscar_run,
            codec: chooser.pick(tensor.name),
        });
    }
    Ok(rows)
}

/// Link bytes per call (both directions) and the median latency of `rounds` calls.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub link_bytes: u64,
    pub latency: Duration,
}

/// One timed call of the demo, by protocol.
enum Call<'a> {
    /// KServe v2 ModelInfer over gRPC.
    Grpc {
        client: &'a mut Client,
        request: &'a [u8],
        expected: &'a [u8],
    },
    /// KServe v2 REST inference with the binary tensor extension over HTTP/1.1.
    Rest {
        client: &'a mut rest::Client,
        model: &'a str,
        tensor: &'a tensors::DemoTensor,
    },
}

impl Call<'_> {
    async fn once(&mut self) -> Result<(), String> {
        match self {
            Call::Grpc {
                client,
                request,
                expected,
            } => call(client, request, expected).await,
            Call::Rest {
                client,
                model,
                tensor,
            } => client.infer(model, tensor).await,
        }
    }
}

async fn measure(
    mut one: Call<'_>,
    link: &Link,
    rounds: u32,
    tuner: Option<Arc<Tuner>>,
) -> Result<Measured, String> {
    // Warm-up: lets the outbound sidecar learn that its peer reads bloscar, and the
    // tuner search the tensor.
    one.once().await?;
    if let Some(tuner) = tuner {
        tokio::task::spawn_blocking(move || tuner.wait_idle())
            .await
            .map_err(|e| e.to_string())?;
    }
    let before = link.carried();
    let mut latencies = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let start = Instant::now();
        one.once().await?;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    Ok(Measured {
        link_bytes: link.carried().since(before).total() / u64::from(rounds),
        latency: latencies[latencies.len() / 2],
    })
}

/// One call, checked bit for bit against the identity model's answer.
async fn call(client: &mut Client, request: &[u8], expected: &[u8]) -> Result<(), String> {
    let response = client
        .unary(kserve::MODEL_INFER, request)
        .await
        .map_err(|e| e.to_string())?;
    if response != expected {
        return Err("a response differs from its request's tensors".to_owned());
    }
    Ok(())
}
