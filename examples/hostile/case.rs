//! One case: a fresh app and pair, the well-behaved client running, the sidecars' memory
//! sampled, the attack for a bounded time, and what every side saw.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{App, AppStats};
use crate::client::{ClientReport, WellBehaved};
use crate::cpu::cpu_seconds;
use crate::memory::{Sampler, available_kib, highest, hwm_kib, rss_kib};
use crate::pair::{Launch, Pair};

/// How often the sidecars' VmRSS is read during a case.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How much longer than its planned time an attack may take before it is cut off.
const OVERRUN: Duration = Duration::from_secs(60);
/// Time left to the sidecars after an attack before their RSS is read again.
const SETTLE: Duration = Duration::from_secs(2);

/// What an attack is given: where everything listens.
#[derive(Clone)]
pub struct Target {
    /// The outbound's proxy listener (where client apps connect).
    pub outbound: SocketAddr,
    /// The inbound's proxy listener (where the peer sidecar connects).
    pub inbound: SocketAddr,
    /// The inbound's admin listener.
    pub inbound_admin: SocketAddr,
    /// What the app has seen.
    pub app: Arc<AppStats>,
    /// How long the attack should last.
    pub duration: Duration,
}

/// Everything the cases share.
pub struct Context {
    /// The binary under test.
    pub bloscar: PathBuf,
    /// Variables every sidecar gets (e.g. `BLOSCAR_MEMORY_BUDGET`).
    pub env: Vec<(String, String)>,
    /// A case stops when the machine's available memory falls below this, KiB.
    pub floor_kib: u64,
    /// The sidecars' logs go to a directory per case under this one.
    pub log_root: PathBuf,
    /// How long an attack lasts.
    pub duration: Duration,
}

/// How a case sets up its pair and app.
pub struct Setup {
    /// The case's name in `--cases`.
    pub name: &'static str,
    /// The case's row label in the tables.
    pub title: &'static str,
    /// `BLOSCAR_*` variables of both sidecars, on top of the context's.
    pub env: Vec<(String, String)>,
    /// The inbound's open-file limit, if lowered.
    pub inbound_open_files: Option<u64>,
    /// The app's SETTINGS_MAX_CONCURRENT_STREAMS; None: no limit.
    pub app_streams: Option<u32>,
    /// Another server for the inbound to forward to, instead of the app.
    pub upstream: Option<SocketAddr>,
    /// Whether the well-behaved client runs (it needs the app behind the pair).
    pub well_behaved: bool,
    /// The attack's time, if not the context's.
    pub duration: Option<Duration>,
}

impl Setup {
    /// A case with default sidecars and app.
    pub fn new(name: &'static str, title: &'static str) -> Setup {
        Setup {
            name,
            title,
            env: Vec::new(),
            inbound_open_files: None,
            app_streams: None,
            upstream: None,
            well_behaved: true,
            duration: None,
        }
    }
}

/// What one case measured.
pub struct Outcome {
    /// The case's row label.
    pub title: &'static str,
    /// What the attacker did and got, in its own words.
    pub observations: Vec<String>,
    /// Counters of each sidecar (outbound, inbound) that grew during the attack.
    pub growth: [Vec<String>; 2],
    /// VmRSS before the attack, KiB.
    pub idle_kib: [u64; 2],
    /// Highest VmRSS sampled during the attack, KiB.
    pub highest_kib: [u64; 2],
    /// VmHWM at the end, KiB.
    pub hwm_kib: [u64; 2],
    /// VmRSS a little after the attack ended, KiB.
    pub after_kib: [u64; 2],
    /// The most message bytes each sidecar's memory budget had charged at once
    /// (`bloscar_memory_peak_bytes`), MiB: what the budget bounds, beside the RSS.
    pub budget_peak_mib: [f64; 2],
    /// CPU seconds each sidecar used during the attack.
    pub cpu_seconds: [f64; 2],
    /// Log lines each sidecar wrote.
    pub log_lines: [usize; 2],
    /// The well-behaved client during the attack.
    pub client: ClientReport,
    /// Why the case stopped early or did not run.
    pub aborted: Option<String>,
    /// How long the attack ran.
    pub elapsed: Duration,
}

impl Outcome {
    /// A case that did not run, and why.
    pub fn not_run(title: &'static str, why: String) -> Outcome {
        Outcome {
            title,
            observations: Vec::new(),
            growth: [Vec::new(), Vec::new()],
            idle_kib: [0; 2],
            highest_kib: [0; 2],
            hwm_kib: [0; 2],
            after_kib: [0; 2],
            budget_peak_mib: [0.0; 2],
            cpu_seconds: [0.0; 2],
            log_lines: [0; 2],
            client: ClientReport::default(),
            aborted: Some(why),
            elapsed: Duration::ZERO,
        }
    }
}

/// Runs `attack` against a fresh pair set up as `setup` says; `prepare` sees the app
/// before the pair starts.
pub async fn run<F, Fut>(
    context: &Context,
    setup: Setup,
    prepare: impl FnOnce(&App),
    attack: F,
) -> Outcome
where
    F: FnOnce(Target) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let (name, title) = (setup.name, setup.title);
    let available = available_kib().unwrap_or(0);
    if available < context.floor_kib {
        return Outcome::not_run(
            title,
            format!("not run: {} MiB available", available / 1024),
        );
    }
    eprintln!("case {name}: starting the app and the pair...");
    let app = App::start(setup.app_streams).await;
    prepare(&app);
    let mut launch = Launch {
        env: context.env.iter().chain(&setup.env).cloned().collect(),
        open_files: None,
    };
    let outbound = launch.clone();
    launch.open_files = setup.inbound_open_files;
    let mut pair = Pair::start(
        &context.bloscar,
        setup.upstream.unwrap_or(app.addr),
        &outbound,
        &launch,
        &context.log_root.join(name),
    )
    .await;
    let client = if setup.well_behaved {
        match WellBehaved::start(pair.listen).await {
            Ok(client) => Some(client),
            Err(e) => {
                return Outcome::not_run(title, format!("the well-behaved client failed: {e}"));
            }
        }
    } else {
        None
    };
    let duration = setup.duration.unwrap_or(context.duration);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pids = pair.pids();
    let idle_kib = pids.map(|pid| rss_kib(pid).unwrap_or(0));
    let before = [pair.outbound.scrape().await, pair.inbound.scrape().await];
    let target = Target {
        outbound: pair.listen,
        inbound: pair.inbound_listen,
        inbound_admin: pair.inbound.admin,
        app: app.stats.clone(),
        duration,
    };
    let sampler = Sampler::start(pids, SAMPLE_EVERY, context.floor_kib);
    let tripped = sampler.tripped();
    eprintln!("case {name}: attacking for {} s...", duration.as_secs());
    let cpu_before = pids.map(cpu_seconds);
    let start = Instant::now();
    let mut aborted = None;
    let mut observations = tokio::select! {
        result = tokio::time::timeout(duration + OVERRUN, attack(target)) => {
            result.unwrap_or_else(|_| vec![format!(
                "the attack did not end within {} s and was dropped",
                (duration + OVERRUN).as_secs()
            )])
        }
        () = tripped => {
            aborted = Some(format!(
                "stopped: available memory fell below {} MiB",
                context.floor_kib / 1024
            ));
            Vec::new()
        }
    };
    let elapsed = start.elapsed();
    let cpu_after = pids.map(cpu_seconds);
    let client = match client {
        Some(client) => client.finish().await,
        None => ClientReport::default(),
    };
    let after = [pair.outbound.scrape().await, pair.inbound.scrape().await];
    let hwm_kib = pids.map(|pid| hwm_kib(pid).unwrap_or(0));
    tokio::time::sleep(SETTLE).await;
    let after_kib = pids.map(|pid| rss_kib(pid).unwrap_or(0));
    let (readings, _) = sampler.finish().await;
    let connection_errors: Vec<String> = app
        .stats
        .connection_errors
        .lock()
        .unwrap()
        .iter()
        .map(|(error, n)| format!("{error} ×{n}"))
        .collect();
    if !connection_errors.is_empty() {
        observations.push(format!(
            "**the app's connections from the inbound ended in errors**: {}",
            connection_errors.join(", ")
        ));
    }
    for (role, sidecar) in [
        ("outbound", &mut pair.outbound),
        ("inbound", &mut pair.inbound),
    ] {
        if !sidecar.running() {
            observations.push(format!("the {role} sidecar EXITED"));
        }
    }
    Outcome {
        title,
        observations,
        growth: [
            after[0].growth_since(&before[0]),
            after[1].growth_since(&before[1]),
        ],
        idle_kib,
        highest_kib: [highest(&readings, 0), highest(&readings, 1)],
        hwm_kib,
        after_kib,
        budget_peak_mib: after
            .each_ref()
            .map(|scrape| scrape.sum("bloscar_memory_peak_bytes", "") / f64::from(1u32 << 20)),
        cpu_seconds: [cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]],
        log_lines: [pair.outbound.log_lines(), pair.inbound.log_lines()],
        client,
        aborted,
        elapsed,
    }
}

/// Sleeps until `duration` has passed since `start`.
pub async fn until(start: Instant, duration: Duration) {
    tokio::time::sleep_until((start + duration).into()).await;
}
