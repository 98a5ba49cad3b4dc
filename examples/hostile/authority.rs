//! Distinct `:authority` per call: 5000 calls on one connection to the outbound, each
//! naming a host of its own, each echo checked; the app counts the connections the
//! inbound opens to it.

use std::time::Instant;

use futures_util::StreamExt;

use crate::app::AppStats;
use crate::case::Target;
use crate::metrics::Scrape;
use crate::pair::admin_get;
use crate::raw::{Connection, MODEL_INFER, call, head, message_frame, status_name};
use crate::tensors::{echo, infer_request, smooth_fp32};

/// Calls, each with its own authority.
const CALLS: usize = 5000;
/// Calls in flight at once on the connection.
const AT_ONCE: usize = 32;

/// Makes the calls (within twice the attack's time) and counts what the app saw.
pub async fn run(target: Target) -> Vec<String> {
    let start = Instant::now();
    let accepted_before = AppStats::get(&target.app.connections);
    let connection = match Connection::open(target.outbound, 4 << 20, 16 << 20).await {
        Ok(c) => c,
        Err(e) => return vec![format!("could not connect: {e}")],
    };
    let request = infer_request(smooth_fp32(1 << 10, 9));
    let body = message_frame(&request);
    let expected = message_frame(&echo(request));
    let port = target.outbound.port();
    let calls = futures_util::stream::iter(0..CALLS)
        .map(|i| {
            let (send, body) = (connection.send.clone(), body.clone());
            let head = head(&format!("tenant-{i}.hostile.test:{port}"), MODEL_INFER, &[]);
            async move { call(&send, head, body).await }
        })
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<_>>();
    let Ok(answers) = tokio::time::timeout(2 * target.duration, calls).await else {
        return vec![format!(
            "the {CALLS} calls did not finish within {} s",
            (2 * target.duration).as_secs()
        )];
    };
    let took = start.elapsed();
    let (mut exact, mut differed, mut failed) = (0, 0, Vec::new());
    for answer in answers {
        match answer {
            Ok(a) if a.status == Some(0) && a.body == expected => exact += 1,
            Ok(a) if a.status == Some(0) => differed += 1,
            Ok(a) => failed.push(status_name(a.status).to_string()),
            Err(e) => failed.push(e),
        }
    }
    let metrics = admin_get(target.inbound_admin, "/metrics").await;
    let peers = Scrape::parse(metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        .sum("bloscar_connections_open", "listener=\"inbound\"");
    drop(connection);
    failed.dedup();
    vec![
        format!(
            "{CALLS} calls on one connection, each with its own :authority, {AT_ONCE} at a \
             time, in {:.1} s: {exact} OK and exact, {differed} differed, {} failed{}",
            took.as_secs_f64(),
            failed.len(),
            failed
                .first()
                .map_or(String::new(), |e| format!(" (first: {e})")),
        ),
        format!(
            "the app accepted {} connection(s) during the calls; the inbound had {peers} \
             client connection(s) open (from the outbound)",
            AppStats::get(&target.app.connections) - accepted_before
        ),
    ]
}
