//! The Markdown tables on stdout.

use std::time::Duration;

use crate::case::Outcome;
use crate::memory::mib;

/// A duration as the tables show it.
pub fn show(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d >= Duration::from_secs(1) => format!("{:.2} s", d.as_secs_f64()),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
    }
}

fn counters(growth: &[String]) -> String {
    if growth.is_empty() {
        "-".into()
    } else {
        growth.join(", ")
    }
}

/// The summary: one row per case.
pub fn print_summary(outcomes: &[Outcome]) {
    println!();
    println!(
        "| case | what happened | sidecar counters that grew (outbound / inbound) | peak RSS \
         outbound / inbound (VmHWM, MiB) | well-behaved client: calls, failures, p50 / p99 |"
    );
    println!("|---|---|---|---|---|");
    for o in outcomes {
        let mut happened = o.observations.join("; ");
        if let Some(why) = &o.aborted {
            happened = format!("**{why}**. {happened}");
        }
        let client = if o.client.calls == 0 {
            "-".into()
        } else {
            let failures = if o.client.failures > 0 {
                format!("**{} failed**", o.client.failures)
            } else {
                "0 failed".into()
            };
            format!(
                "{} calls, {failures}, {} / {}",
                o.client.calls,
                show(o.client.p50),
                show(o.client.p99)
            )
        };
        println!(
            "| {} | {happened} | {} / {} | {} / {} | {client} |",
            o.title,
            counters(&o.growth[0]),
            counters(&o.growth[1]),
            mib(o.hwm_kib[0]),
            mib(o.hwm_kib[1]),
        );
    }
}

/// Memory per case and sidecar: before, highest sampled, peak, after; and the client's
/// slowest call and failures.
pub fn print_details(outcomes: &[Outcome]) {
    println!();
    println!(
        "| case | attack time | outbound RSS MiB: idle / highest sampled / VmHWM / 2 s after \
         | inbound RSS MiB: same | budget's peak charge MiB out / in | CPU s out / in \
         | log lines out / in | client's slowest call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let memory = |i: usize| {
            format!(
                "{} / {} / {} / {}",
                mib(o.idle_kib[i]),
                mib(o.highest_kib[i]),
                mib(o.hwm_kib[i]),
                mib(o.after_kib[i])
            )
        };
        println!(
            "| {} | {:.1} s | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} / {} | {} |",
            o.title,
            o.elapsed.as_secs_f64(),
            memory(0),
            memory(1),
            o.budget_peak_mib[0],
            o.budget_peak_mib[1],
            o.cpu_seconds[0],
            o.cpu_seconds[1],
            o.log_lines[0],
            o.log_lines[1],
            show(o.client.max),
        );
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.client.failures > 0).collect();
    if !failed.is_empty() {
        println!();
        println!("Failures of the well-behaved client:");
        println!();
        for o in failed {
            let between = o
                .client
                .failed_between
                .map_or(String::new(), |(first, last)| {
                    format!(
                        ", ending between {:.1} and {:.1} s into the attack",
                        first.as_secs_f64(),
                        last.as_secs_f64()
                    )
                });
            println!(
                "- {}: {} of {} calls{between}: {}",
                o.title,
                o.client.failures,
                o.client.calls,
                o.client.errors.join(" | ")
            );
        }
    }
}
