//! Running out of file descriptors with a liveness probe running: the inbound runs under
//! `ulimit -n 256`; the attacker opens HTTP/2 connections to it until they are refused
//! and keeps trying for the whole attack, while a probe GETs /live on the inbound's
//! admin port every 100 ms.

use std::time::{Duration, Instant};

use crate::case::Target;
use crate::pair::admin_get;
use crate::raw::Connection;

/// The inbound's soft limit on open files.
pub const OPEN_FILES: u64 = 256;
/// How often the probe asks.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a connection the sidecar refuses takes at most to be closed: one that is
/// still open after this is being served.
const REFUSAL_WITHIN: Duration = Duration::from_millis(300);
/// Connection attempts made at once.
const BATCH: usize = 16;
/// The attacker's pause between batches once connections are refused.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// What the probe saw.
#[derive(Default)]
struct Probes {
    asked: u64,
    failed: u64,
    slowest: Duration,
}

async fn probe(admin: std::net::SocketAddr, until: tokio::time::Instant) -> Probes {
    let mut probes = Probes::default();
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    while tokio::time::Instant::now() < until {
        ticks.tick().await;
        let start = Instant::now();
        let response = admin_get(admin, "/live").await;
        probes.asked += 1;
        probes.slowest = probes.slowest.max(start.elapsed());
        if !response.starts_with("HTTP/1.1 200") {
            probes.failed += 1;
        }
    }
    probes
}

/// One HTTP/2 connection, kept if the sidecar serves it.
async fn attempt(target: std::net::SocketAddr) -> Result<Connection, String> {
    let mut connection = Connection::open(target, 65_535, 65_535).await?;
    match tokio::time::timeout(REFUSAL_WITHIN, &mut connection.driver).await {
        Err(_) => Ok(connection),
        Ok(Ok(Err(e))) => Err(format!("closed: {e}")),
        Ok(_) => Err("closed".into()),
    }
}

/// Opens connections until refused, and keeps trying, while the probe runs.
pub async fn run(target: Target) -> Vec<String> {
    let start = Instant::now();
    let until = tokio::time::Instant::from_std(start + target.duration);
    let prober = tokio::spawn(probe(target.inbound_admin, until));
    let mut held = Vec::new();
    let mut refused = 0u64;
    let mut first_refusal = None;
    while tokio::time::Instant::now() < until {
        let batch =
            futures_util::future::join_all((0..BATCH).map(|_| attempt(target.inbound))).await;
        let mut refusals = 0;
        for outcome in batch {
            match outcome {
                Ok(connection) => held.push(connection),
                Err(_) => refusals += 1,
            }
        }
        if refusals > 0 {
            refused += refusals;
            first_refusal.get_or_insert(held.len());
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
    let still_open = held.iter().filter(|c| !c.driver.is_finished()).count();
    let probes = prober.await.unwrap_or_default();
    drop(held);
    vec![
        format!(
            "inbound under ulimit -n {OPEN_FILES}: the attacker's connections were served \
             up to {} open, then {refused} attempts were refused; {still_open} of the served \
             ones still open at the end",
            first_refusal.map_or("-".to_string(), |n| n.to_string()),
        ),
        format!(
            "/live probed {} times every {} ms: {} failed, slowest {:.1} ms",
            probes.asked,
            PROBE_EVERY.as_millis(),
            probes.failed,
            probes.slowest.as_secs_f64() * 1e3
        ),
    ]
}
