//! The hostile-traffic suite and soak (run by `scripts/hostile.sh`; see
//! docs/hostile-traffic.md). Real release `bloscar` processes on loopback:
//!
//! client(s) -> outbound sidecar -> inbound sidecar -> app
//!
//! Each case starts a fresh pair and app, runs a well-behaved client through the pair
//! (4 callers, ModelInfer calls of 64 KiB to 1 MiB, every echo checked), attacks for a
//! bounded time, samples each sidecar's VmRSS every 100 ms, and reports what the
//! attacker got, the sidecars' counters, their peak memory and what the well-behaved
//! client saw. The soak (`--soak MINUTES`) runs a mixed steady load instead and reports
//! the trend of the sidecars' memory.

mod app;
mod authority;
mod case;
mod client;
mod containers;
mod cpu;
mod descriptors;
mod hung;
mod idle;
mod large;
mod long_call;
mod memory;
mod metrics;
mod pair;
mod raw;
mod report;
mod reset;
mod soak;
#[path = "../bench_proxy/tensors.rs"]
mod tensors;

use std::path::PathBuf;
use std::time::Duration;

use crate::case::{Context, Outcome, Setup};

/// Every case, in the order they run: (name in `--cases`, row label).
const CASES: [(&str, &str); 12] = [
    ("baseline", "0. no attack"),
    (
        "stalled",
        "1a. 100 × 60 MiB calls on 2 connections, stalled half way",
    ),
    (
        "never-read",
        "1b. 100 × 60 MiB calls on 2 connections, responses never read",
    ),
    (
        "containers",
        "2a. 50 containers expanding to the 256 MiB message limit, at once",
    ),
    (
        "over-limit",
        "2b. containers announcing 4 × the message limit, in bursts",
    ),
    (
        "idle",
        "3. 6000 idle and half-open connections to the inbound",
    ),
    (
        "descriptors",
        "4. inbound out of descriptors (ulimit -n 256), /live probed",
    ),
    (
        "hung",
        "5a. hung and slow app, with and without grpc-timeout",
    ),
    (
        "hung-app-limit",
        "5b. as 5a, the app allowing 200 streams per connection",
    ),
    (
        "authority",
        "6. 5000 distinct :authority values on one connection",
    ),
    ("rapid-reset", "7. rapid reset through the outbound"),
    (
        "long-call",
        "8. one silent call of 330 s (5.5 min) to a grpcio server",
    ),
];
/// The cases that run by default (`--long` adds `long-call`).
const SHORT: usize = 11;

const USAGE: &str = "usage: hostile [--bloscar PATH] [--cases a,b,...] [--long] \
    [--soak MINUTES] [--attack-secs N] [--memory-budget VALUE] [--memory-floor-mib N] \
    [--python PATH] [--long-call-secs N] [--logs DIR] [--sidecar-log FILTER] [--label TEXT]";

struct Options {
    bloscar: PathBuf,
    cases: Vec<&'static str>,
    soak_minutes: Option<u64>,
    attack: Duration,
    memory_budget: Option<String>,
    floor_mib: u64,
    python: PathBuf,
    long_call: Duration,
    logs: PathBuf,
    sidecar_log: Option<String>,
    label: Option<String>,
}

fn fail(message: &str) -> ! {
    eprintln!("{message}\n{USAGE}");
    std::process::exit(2)
}

fn number(name: &str, value: String) -> u64 {
    value
        .parse()
        .unwrap_or_else(|_| fail(&format!("{name} needs a whole number")))
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut bloscar = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bloscar")))
        .unwrap_or_else(|| PathBuf::from("bloscar"));
    let mut cases: Option<String> = None;
    let mut long = false;
    let mut soak_minutes = None;
    let mut attack = Duration::from_secs(20);
    let mut memory_budget = std::env::var("BLOSCAR_MEMORY_BUDGET").ok();
    let mut floor_mib = 2048;
    let mut python = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.venvs/triton-client/bin/python"
    ));
    let mut long_call = long_call::DEFAULT_SLEEP;
    let mut logs = std::env::temp_dir().join(format!("bloscar-hostile-{}", std::process::id()));
    let mut sidecar_log = None;
    let mut label = None;
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--bloscar" => bloscar = value().into(),
            "--cases" => cases = Some(value()),
            "--long" => long = true,
            "--soak" => soak_minutes = Some(number(&arg, value())),
            "--attack-secs" => attack = Duration::from_secs(number(&arg, value())),
            "--memory-budget" => memory_budget = Some(value()),
            "--memory-floor-mib" => floor_mib = number(&arg, value()),
            "--python" => python = value().into(),
            "--long-call-secs" => long_call = Duration::from_secs(number(&arg, value())),
            "--logs" => logs = value().into(),
            "--sidecar-log" => sidecar_log = Some(value()),
            "--label" => label = Some(value()),
            _ => fail(&format!("unknown argument {arg}")),
        }
    }
    let cases = match cases {
        Some(list) => list
            .split(',')
            .map(|c| {
                CASES
                    .iter()
                    .find(|(name, _)| *name == c.trim())
                    .map(|(name, _)| *name)
                    .unwrap_or_else(|| fail(&format!("unknown case {c}")))
            })
            .collect(),
        // A soak alone unless cases are named.
        None if soak_minutes.is_some() && !long => Vec::new(),
        None => CASES[..SHORT]
            .iter()
            .map(|(name, _)| *name)
            .chain(long.then_some(CASES[SHORT].0))
            .collect(),
    };
    Options {
        bloscar,
        cases,
        soak_minutes,
        attack,
        memory_budget,
        floor_mib,
        python,
        long_call,
        logs,
        sidecar_log,
        label,
    }
}

fn title(name: &str) -> &'static str {
    CASES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("a known case")
}

/// Runs the case called `name`.
async fn run_case(
    context: &Context,
    options: &Options,
    name: &'static str,
    bulk: &Option<std::sync::Arc<app::Bulk>>,
) -> Outcome {
    let setup = Setup::new(name, title(name));
    match name {
        "baseline" => {
            case::run(
                context,
                setup,
                |_| {},
                |target| async move {
                    tokio::time::sleep(target.duration).await;
                    vec!["the well-behaved client alone".into()]
                },
            )
            .await
        }
        "stalled" | "never-read" => {
            let bulk = bulk.clone().expect("made for the large cases");
            let for_app = bulk.clone();
            let prepare = move |app: &app::App| app.set_bulk(for_app);
            if name == "stalled" {
                case::run(context, setup, prepare, |t| large::stalled(t, bulk)).await
            } else {
                // The requests take 20 s or more to cross the pair before the answers
                // that are never read start: they get up to 40 s.
                let setup = Setup {
                    duration: Some(2 * context.duration),
                    ..setup
                };
                case::run(context, setup, prepare, |t| large::never_read(t, bulk)).await
            }
        }
        "containers" | "over-limit" => {
            let setup = Setup {
                env: vec![(
                    "BLOSCAR_MAX_MESSAGE_BYTES".into(),
                    containers::LIMIT.to_string(),
                )],
                ..setup
            };
            if name == "containers" {
                case::run(context, setup, |_| {}, containers::expanding).await
            } else {
                case::run(context, setup, |_| {}, containers::over_limit).await
            }
        }
        "idle" => case::run(context, setup, |_| {}, idle::run).await,
        "descriptors" => {
            let setup = Setup {
                inbound_open_files: Some(descriptors::OPEN_FILES),
                ..setup
            };
            case::run(context, setup, |_| {}, descriptors::run).await
        }
        "hung" => case::run(context, setup, |_| {}, hung::run).await,
        "hung-app-limit" => {
            let setup = Setup {
                app_streams: Some(200),
                ..setup
            };
            case::run(context, setup, |_| {}, hung::run).await
        }
        "authority" => case::run(context, setup, |_| {}, authority::run).await,
        "rapid-reset" => case::run(context, setup, |_| {}, reset::run).await,
        "long-call" => {
            let server = match long_call::GrpcioServer::start(&options.python) {
                Ok(server) => server,
                Err(e) => return Outcome::not_run(setup.title, format!("not run: {e}")),
            };
            let setup = Setup {
                upstream: Some(server.addr),
                well_behaved: false,
                duration: Some(options.long_call),
                ..setup
            };
            case::run(context, setup, |_| {}, long_call::run).await
        }
        other => unreachable!("case {other} has no runner"),
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    // Thousands of connections at once: the suite's own descriptors must not run out.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut env = Vec::new();
    if let Some(budget) = &options.memory_budget {
        env.push(("BLOSCAR_MEMORY_BUDGET".to_string(), budget.clone()));
    }
    if let Some(filter) = &options.sidecar_log {
        env.push(("BLOSCAR_LOG".to_string(), filter.clone()));
    }
    let context = Context {
        bloscar: options.bloscar.clone(),
        env,
        floor_kib: options.floor_mib * 1024,
        log_root: options.logs.clone(),
        duration: options.attack,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Hostile traffic on loopback, {cores} cores, {:.1} GiB available; bloscar = {}{}; \
         BLOSCAR_MEMORY_BUDGET {}; attacks of {} s; sidecar logs in {}.",
        memory::available_kib().unwrap_or(0) as f64 / (1 << 20) as f64,
        options.bloscar.display(),
        options
            .label
            .as_ref()
            .map_or(String::new(), |l| format!(" ({l})")),
        options
            .memory_budget
            .as_ref()
            .map_or("unset".to_string(), |b| format!("= {b}")),
        options.attack.as_secs(),
        options.logs.display(),
    );
    if !options.cases.is_empty() {
        let bulk = options
            .cases
            .iter()
            .any(|c| matches!(*c, "stalled" | "never-read"))
            .then(|| {
                eprintln!("making the 60 MiB request and its echo...");
                large::bulk()
            });
        let mut outcomes = Vec::new();
        for &name in &options.cases {
            let outcome = run_case(&context, &options, name, &bulk).await;
            eprintln!(
                "case {name}: done; client {} calls, {} failed",
                outcome.client.calls, outcome.client.failures
            );
            outcomes.push(outcome);
        }
        report::print_summary(&outcomes);
        report::print_details(&outcomes);
    }
    if let Some(minutes) = options.soak_minutes {
        soak::run(&context, minutes).await;
    }
}
