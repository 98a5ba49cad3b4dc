//! Markdown tables on stdout and the same figures as JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::memory::Memory;
use crate::rss::{RssCase, RssOutcome};

/// p50 and p99 of one path's call times.
#[derive(Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// Latency of one call size on every path (the first path is direct).
pub struct LatencyTable {
    /// What was called, e.g. "1 KiB FP32 unary".
    pub call: String,
    /// Calls per path.
    pub calls: usize,
    /// Per path: its label and percentiles.
    pub paths: Vec<(String, Percentiles)>,
    /// Per path: message MiB per call as the apps exchanged them and as they crossed
    /// between the sidecars (bloscar paths only).
    pub link_mib: Vec<Option<(f64, f64)>>,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn show(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", micros(d))
    }
}

fn show_added(base: Duration, d: Duration) -> String {
    let delta = d.as_secs_f64() - base.as_secs_f64();
    // In the unit the path's own time is shown in.
    if d >= Duration::from_millis(10) {
        format!("{:+.2} ms", delta * 1e3)
    } else {
        format!("{:+.0} µs", delta * 1e6)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl LatencyTable {
    /// Prints the table; returns its figures.
    pub fn print(&self) -> Value {
        let (_, direct) = self.paths[0];
        println!();
        println!("{}, {} calls per path, interleaved:", self.call, self.calls);
        println!();
        println!("| path | p50 | p99 | added p50 | added p99 | MiB per call between the proxies |");
        println!("|---|---|---|---|---|---|");
        let mut rows = Vec::new();
        for ((label, p), link) in self.paths.iter().zip(&self.link_mib) {
            let link_text = match link {
                Some((app, between)) => {
                    format!("{between:.2} of {app:.2} (ratio {:.2})", app / between)
                }
                None => "-".into(),
            };
            println!(
                "| {label} | {} | {} | {} | {} | {link_text} |",
                show(p.p50),
                show(p.p99),
                show_added(direct.p50, p.p50),
                show_added(direct.p99, p.p99),
            );
            rows.push(json!({
                "path": label,
                "p50_us": micros(p.p50),
                "p99_us": micros(p.p99),
                "added_p50_us": micros(p.p50) - micros(direct.p50),
                "added_p99_us": micros(p.p99) - micros(direct.p99),
                "app_mib_per_call": link.map(|l| l.0),
                "between_proxies_mib_per_call": link.map(|l| l.1),
            }));
        }
        json!({ "call": self.call, "calls_per_path": self.calls, "paths": rows })
    }
}

/// Prints calls per second per path (the first is direct); returns the figures.
pub fn print_throughput(
    call: &str,
    callers: usize,
    seconds: f64,
    paths: &[(String, f64)],
) -> Value {
    let direct = paths[0].1;
    println!();
    println!(
        "{call}, {callers} concurrent callers on one connection, {seconds:.0} s per path in \
         1 s slices, interleaved:"
    );
    println!();
    println!("| path | calls/s | share of direct |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for (label, rate) in paths {
        println!("| {label} | {rate:.0} | {:.0} % |", 100.0 * rate / direct);
        rows.push(json!({ "path": label, "calls_per_second": rate }));
    }
    json!({ "call": call, "callers": callers, "seconds_per_path": seconds, "paths": rows })
}

/// Prints one memory case's table; returns its figures.
pub fn print_rss(case: RssCase, outcomes: &[(String, RssOutcome)]) -> Value {
    let message_mib = case.message_bytes as f64 / (1 << 20) as f64;
    println!();
    let connections = match case.connections {
        Some(n) => format!(" on {n} client connection(s)"),
        None => String::new(),
    };
    println!(
        "Memory, {} stream(s) at once{connections}, each one {message_mib:.0} MiB FP32 \
         request and its {message_mib:.0} MiB echo:",
        case.streams
    );
    println!();
    println!(
        "| proxy | process | RSS idle | peak (VmHWM) | highest RSS sampled | (peak - idle) per \
         stream | per stream / message size | time | MiB between the proxies |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (label, outcome) in outcomes {
        for (i, &(role, idle, after)) in outcome.processes.iter().enumerate() {
            let Memory { rss_kib: idle, .. } = idle;
            let peak = after.hwm_kib;
            let per_stream = peak.saturating_sub(idle) as f64 / case.streams as f64;
            let ratio = per_stream * 1024.0 / case.message_bytes as f64;
            let time = match &outcome.failure {
                None => format!("{:.1} s", outcome.elapsed.as_secs_f64()),
                Some(why) => format!("FAILED after {:.1} s: {why}", outcome.elapsed.as_secs_f64()),
            };
            let link = match outcome.link_mib {
                Some((app, between)) => format!("{between:.0} of {app:.0}"),
                None => "-".into(),
            };
            println!(
                "| {label} | {role} | {} | {} | {} | {} | {ratio:.3} | {time} | {link} |",
                mib(idle),
                mib(peak),
                mib(outcome.sampled_kib[i]),
                mib(per_stream as u64),
            );
            rows.push(json!({
                "proxy": label,
                "process": role,
                "idle_rss_kib": idle,
                "peak_hwm_kib": peak,
                "highest_sampled_rss_kib": outcome.sampled_kib[i],
                "per_stream_kib": per_stream,
                "per_stream_over_message_size": ratio,
                "seconds": outcome.elapsed.as_secs_f64(),
                "failure": outcome.failure,
                "app_mib": outcome.link_mib.map(|l| l.0),
                "between_proxies_mib": outcome.link_mib.map(|l| l.1),
            }));
        }
    }
    json!({
        "case": case.name,
        "streams": case.streams,
        "message_bytes": case.message_bytes,
        "rows": rows,
    })
}
