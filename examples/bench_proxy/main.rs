//! Benchmark of proxy pairs on loopback (run by `scripts/bench-proxy.sh`): the bloscar
//! sidecar pair under test, optionally a baseline build of it, and a pair of plain nginx
//! gRPC proxies, all in the same topology in front of one echo server:
//!
//! client -> proxy A -> proxy B -> echo server, and client -> echo server (direct).
//!
//! Cases (`--cases`, comma-separated; default `latency,throughput`):
//! - `latency`: p50/p99 of a 1 KiB unary call and of a 4 MiB incompressible tensor
//!   call, on every path in turn;
//! - `throughput`: 1 KiB calls per second with 16 concurrent callers, every path in turn;
//! - `rss-1g`: peak resident memory of each proxy process for one stream carrying a
//!   1 GiB FP32 tensor and its 1 GiB echo;
//! - `rss-64x64m`: the same for 64 concurrent streams of 64 MiB;
//! - `rss-100x60m-2conn`: 100 concurrent streams of 60 MiB sharing 2 client connections,
//!   where the flow-control windows are per connection and what the proxies hold per
//!   stream adds up (the case `BLOSCAR_MEMORY_BUDGET` bounds: try `--memory-budget`).
//!
//! `--hop-tls` adds, for each binary, a pair with mutual TLS between the sidecars (the
//! default configuration otherwise), beside the same pair in cleartext.
//!
//! Every echo is checked bit for bit.

mod bulk;
mod echo;
mod latency;
mod memory;
mod nginx;
mod report;
mod rss;
mod sidecar;
mod tensors;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::bulk::BulkMessages;
use crate::latency::{Path, interleaved, percentile, throughput};
use crate::nginx::NginxPair;
use crate::report::{LatencyTable, Percentiles};
use crate::rss::{Process, RssCase, RssOutcome};
use crate::sidecar::{SidecarPair, model_infer_bytes};
use crate::tensors::{infer_request, random_bytes, smooth_fp32};

const MIB: f64 = (1 << 20) as f64;
const SMALL_BYTES: usize = 1 << 10;
const SMALL_CALLS: usize = 2000;
const LARGE_BYTES: usize = 4 << 20;
const LARGE_CALLS: usize = 30;
const WARMUP_CALLS: usize = 100;
const CALLERS: usize = 16;
const THROUGHPUT_SLICE: Duration = Duration::from_secs(1);
const THROUGHPUT_ROUNDS: usize = 5;
/// A tensor size no tensor reaches: the sidecars forward every message uncompressed.
const NEVER: &str = "4294967295";
/// The largest gRPC message (4 GiB - 1), for the memory cases.
const GRPC_MAX_MESSAGE: &str = "4294967295";

const RSS_CASES: [RssCase; 3] = [
    RssCase {
        name: "rss-1g",
        streams: 1,
        message_bytes: 1 << 30,
        connections: None,
    },
    RssCase {
        name: "rss-64x64m",
        streams: 64,
        message_bytes: 64 << 20,
        connections: None,
    },
    RssCase {
        name: "rss-100x60m-2conn",
        streams: 100,
        message_bytes: 60 << 20,
        connections: Some(2),
    },
];

const USAGE: &str = "usage: bench_proxy [--bloscar PATH] [--baseline PATH] [--nginx PATH] \
    [--codec SETTING] [--cases latency,throughput,rss-1g,rss-64x64m,rss-100x60m-2conn] \
    [--json-out PATH] [--memory-floor-mib N] [--memory-budget SIZE] [--hop-tls]";

struct Options {
    /// Binaries under test: (label, path); the baseline, if any, second.
    binaries: Vec<(&'static str, PathBuf)>,
    nginx: Option<PathBuf>,
    codec: String,
    cases: Vec<String>,
    json_out: Option<PathBuf>,
    floor_mib: u64,
    /// `BLOSCAR_MEMORY_BUDGET` of the sidecar pairs in the memory cases, when given.
    memory_budget: Option<String>,
    /// Also measure each binary's pair with mutual TLS on the hop.
    hop_tls: bool,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut bloscar = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bloscar")))
        .unwrap_or_else(|| PathBuf::from("bloscar"));
    let mut baseline = None;
    let mut nginx = None;
    let mut codec = String::from("auto");
    let mut cases = "latency,throughput".to_string();
    let mut json_out = None;
    let mut floor_mib = 2048;
    let mut memory_budget = None;
    let mut hop_tls = false;
    let value = |name: &str, args: &mut std::iter::Skip<std::env::Args>| {
        args.next().unwrap_or_else(|| {
            eprintln!("{name} needs a value\n{USAGE}");
            std::process::exit(2)
        })
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bloscar" => bloscar = value(&arg, &mut args).into(),
            "--baseline" => baseline = Some(value(&arg, &mut args).into()),
            "--nginx" => nginx = Some(value(&arg, &mut args).into()),
            "--codec" => codec = value(&arg, &mut args),
            "--cases" => cases = value(&arg, &mut args),
            "--json-out" => json_out = Some(value(&arg, &mut args).into()),
            "--memory-budget" => memory_budget = Some(value(&arg, &mut args)),
            "--hop-tls" => hop_tls = true,
            "--memory-floor-mib" => {
                floor_mib = value(&arg, &mut args).parse().unwrap_or_else(|_| {
                    eprintln!("--memory-floor-mib needs a whole number\n{USAGE}");
                    std::process::exit(2)
                })
            }
            _ => {
                eprintln!("{USAGE}\ngot {arg}");
                std::process::exit(2);
            }
        }
    }
    let cases: Vec<String> = cases.split(',').map(|c| c.trim().to_string()).collect();
    let known = [
        "latency",
        "throughput",
        "rss-1g",
        "rss-64x64m",
        "rss-100x60m-2conn",
    ];
    if let Some(bad) = cases.iter().find(|c| !known.contains(&c.as_str())) {
        eprintln!("unknown case {bad}\n{USAGE}");
        std::process::exit(2);
    }
    let mut binaries = vec![("bloscar", bloscar)];
    binaries.extend(baseline.map(|path| ("baseline", path)));
    Options {
        binaries,
        nginx: nginx::find(nginx),
        codec,
        cases,
        json_out,
        floor_mib,
        memory_budget,
        hop_tls,
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = json!({
        "cores": cores,
        "codec": options.codec,
        "binaries": options.binaries.iter()
            .map(|(label, path)| json!({ "label": label, "path": path }))
            .collect::<Vec<_>>(),
        "nginx": options.nginx,
        "hop_tls": options.hop_tls,
    });
    println!(
        "Proxy pairs on loopback, {cores} cores; client, proxies and server on the same \
         machine. Binaries: {}; nginx: {}.",
        options
            .binaries
            .iter()
            .map(|(label, path)| format!("{label} = {}", path.display()))
            .collect::<Vec<_>>()
            .join(", "),
        options
            .nginx
            .as_ref()
            .map_or("not found".into(), |p| p.display().to_string())
    );

    let wants = |case: &str| options.cases.iter().any(|c| c == case);
    if wants("latency") || wants("throughput") {
        let figures = calls(&options, wants("latency"), wants("throughput")).await;
        report["latency"] = figures.0;
        report["throughput"] = figures.1;
    }
    let mut memory = Vec::new();
    for case in RSS_CASES {
        if wants(case.name) {
            memory.push(memory_case(&options, case).await);
        }
    }
    report["memory"] = Value::Array(memory);

    if let Some(path) = &options.json_out {
        let text = serde_json::to_string_pretty(&report).expect("serialisable figures");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("figures written to {}", path.display());
    }
}

/// The proxy pairs of the latency and throughput cases, running while they are kept.
enum Pair {
    Nginx(
        #[expect(dead_code, reason = "held so that nginx runs until the paths are done")] NginxPair,
    ),
    Sidecars(SidecarPair),
}

/// Where a path enters: its label, the address the client calls, the pair behind it.
struct Entry {
    label: String,
    addr: std::net::SocketAddr,
    pair: Option<Pair>,
}

/// The latency and throughput cases: the paths, then the figures (JSON null when a case
/// was not asked for).
async fn calls(options: &Options, latency: bool, throughput_case: bool) -> (Value, Value) {
    let server = echo::start().await;
    let certificates = options.hop_tls.then(tls::HopCertificates::new);
    let mut entries = vec![Entry {
        label: "direct".into(),
        addr: server,
        pair: None,
    }];
    match &options.nginx {
        Some(path) => {
            let pair = NginxPair::start(path, server, "calls");
            entries.push(Entry {
                label: "nginx pair".into(),
                addr: pair.listen,
                pair: Some(Pair::Nginx(pair)),
            });
        }
        None => eprintln!("nginx not found: its path is left out (see --nginx)"),
    }
    for (label, binary) in &options.binaries {
        let codec = ("BLOSCAR_CODEC", options.codec.clone());
        let mut configurations = vec![
            (
                "compression off",
                vec![codec.clone(), ("BLOSCAR_MIN_TENSOR_BYTES", NEVER.into())],
            ),
            ("default", vec![codec.clone()]),
        ];
        if let Some(certificates) = &certificates {
            let mut env = vec![codec];
            env.extend(certificates.env());
            configurations.push(("default, mutual TLS on the hop", env));
        }
        for (configuration, env) in configurations {
            let pair = SidecarPair::start(binary, server, &env).await;
            entries.push(Entry {
                label: format!("{label} pair, {configuration}"),
                addr: pair.listen,
                pair: Some(Pair::Sidecars(pair)),
            });
        }
    }
    let mut paths = Vec::new();
    for entry in &entries {
        paths.push(Path::connect(entry.label.clone(), entry.addr).await);
    }

    let small = infer_request(smooth_fp32(SMALL_BYTES, 1));
    let large = infer_request(random_bytes(LARGE_BYTES, 2));
    eprintln!("warming up every path...");
    interleaved(&mut paths, &small, WARMUP_CALLS).await;
    interleaved(&mut paths, &large, 3).await;

    let mut latency_figures = Value::Null;
    if latency {
        eprintln!("1 KiB unary calls ({SMALL_CALLS} per path)...");
        let small_samples = interleaved(&mut paths, &small, SMALL_CALLS).await;
        eprintln!("4 MiB incompressible unary calls ({LARGE_CALLS} per path)...");
        let before = link_bytes(&entries).await;
        let large_samples = interleaved(&mut paths, &large, LARGE_CALLS).await;
        let after = link_bytes(&entries).await;
        let link_mib = before
            .iter()
            .zip(&after)
            .map(|(b, a)| {
                let per_call = |x: f64, y: f64| (y - x) / LARGE_CALLS as f64 / MIB;
                Some((b.as_ref()?, a.as_ref()?))
                    .map(|(b, a)| (per_call(b.0, a.0), per_call(b.1, a.1)))
            })
            .collect::<Vec<_>>();
        let table = |call: &str, calls, samples: Vec<Vec<Duration>>, link_mib| LatencyTable {
            call: call.into(),
            calls,
            paths: paths
                .iter()
                .zip(samples)
                .map(|(path, mut s)| {
                    let p50 = percentile(&mut s, 0.5);
                    let p99 = percentile(&mut s, 0.99);
                    (path.label.clone(), Percentiles { p50, p99 })
                })
                .collect(),
            link_mib,
        };
        let none = vec![None; paths.len()];
        latency_figures = json!([
            table(
                "1 KiB FP32 unary (request + echo)",
                SMALL_CALLS,
                small_samples,
                none
            )
            .print(),
            table(
                "4 MiB incompressible FP32 unary (random bytes; request + echo)",
                LARGE_CALLS,
                large_samples,
                link_mib,
            )
            .print(),
        ]);
    }

    let mut throughput_figures = Value::Null;
    if throughput_case {
        eprintln!("1 KiB calls with {CALLERS} concurrent callers...");
        let rates = throughput(&paths, &small, CALLERS, THROUGHPUT_SLICE, THROUGHPUT_ROUNDS).await;
        let rows: Vec<(String, f64)> = paths.iter().map(|p| p.label.clone()).zip(rates).collect();
        throughput_figures = report::print_throughput(
            "1 KiB FP32 unary",
            CALLERS,
            (THROUGHPUT_ROUNDS as u32 * THROUGHPUT_SLICE).as_secs_f64(),
            &rows,
        );
    }
    (latency_figures, throughput_figures)
}

/// Per path, the ModelInfer message bytes its outbound sidecar has counted (sidecar
/// paths only).
async fn link_bytes(entries: &[Entry]) -> Vec<Option<(f64, f64)>> {
    let mut out = Vec::new();
    for entry in entries {
        out.push(match &entry.pair {
            Some(Pair::Sidecars(pair)) => Some(model_infer_bytes(pair.outbound.admin).await),
            _ => None,
        });
    }
    out
}

/// One memory case through each binary's pair (default configuration, the largest gRPC
/// message allowed) and the nginx pair, one after another, each started afresh.
async fn memory_case(options: &Options, case: RssCase) -> Value {
    eprintln!(
        "{}: making the {} MiB message and its echo...",
        case.name,
        case.message_bytes >> 20
    );
    let messages = Arc::new(BulkMessages::new(smooth_fp32(case.message_bytes, 3)));
    let server = bulk::start_server(messages.clone()).await;
    let floor_kib = options.floor_mib * 1024;
    let mut outcomes: Vec<(String, RssOutcome)> = Vec::new();
    for (label, binary) in &options.binaries {
        let mut env = vec![
            ("BLOSCAR_CODEC", options.codec.clone()),
            ("BLOSCAR_MAX_MESSAGE_BYTES", GRPC_MAX_MESSAGE.into()),
            // Both sides are sidecars: compress from the first call, which is the only
            // one when there is one stream.
            ("BLOSCAR_UNKNOWN_PEER", "encode".into()),
        ];
        if let Some(budget) = &options.memory_budget {
            env.push(("BLOSCAR_MEMORY_BUDGET", budget.clone()));
        }
        let pair = SidecarPair::start(binary, server, &env).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let processes = [
            Process {
                role: "outbound",
                pids: vec![pair.outbound.pid()],
            },
            Process {
                role: "inbound",
                pids: vec![pair.inbound.pid()],
            },
        ];
        eprintln!("{}: {label} pair...", case.name);
        let mut outcome = rss::measure(case, &messages, pair.listen, &processes, floor_kib).await;
        for (role, sidecar) in [("outbound", &pair.outbound), ("inbound", &pair.inbound)] {
            let budget = sidecar::metric(sidecar.admin, "bloscar_memory_budget_bytes").await;
            let peak = sidecar::metric(sidecar.admin, "bloscar_memory_peak_bytes").await;
            let waits = sidecar::metric(sidecar.admin, "bloscar_memory_waits_total").await;
            if let (Some(budget), Some(peak), Some(waits)) = (budget, peak, waits) {
                eprintln!(
                    "{}: {label} {role}: memory budget {:.0} MiB, peak held {:.1} MiB, {waits} waits",
                    case.name,
                    budget / MIB,
                    peak / MIB
                );
            }
        }
        let (app, between) = model_infer_bytes(pair.outbound.admin).await;
        outcome.link_mib = Some((app / MIB, between / MIB));
        drop(pair);
        outcomes.push((format!("{label} pair"), outcome));
    }
    if let Some(path) = &options.nginx {
        let pair = NginxPair::start(path, server, case.name);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let [a, b] = pair.pids();
        let processes = [
            Process {
                role: "A (master + workers)",
                pids: a,
            },
            Process {
                role: "B (master + workers)",
                pids: b,
            },
        ];
        eprintln!("{}: nginx pair...", case.name);
        let outcome = rss::measure(case, &messages, pair.listen, &processes, floor_kib).await;
        drop(pair);
        outcomes.push(("nginx pair".into(), outcome));
    }
    report::print_rss(case, &outcomes)
}
