//! Peak resident memory of a proxy pair per stream of huge messages: `streams` calls at
//! once, each sending one `message_bytes` FP32 tensor and receiving its echo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bulk::{self, BulkMessages};
use crate::memory::{Memory, Sampler, available_kib};

/// One memory case: how many concurrent streams, each carrying one message this big.
#[derive(Clone, Copy)]
pub struct RssCase {
    /// The case's name in `--cases`.
    pub name: &'static str,
    /// Concurrent calls.
    pub streams: usize,
    /// Size of the tensor in each request (and in its echo).
    pub message_bytes: usize,
    /// Connections the streams share, round robin; `None`: one connection per stream.
    pub connections: Option<usize>,
}

/// One process group of a proxy pair under test (a sidecar, or nginx master + workers).
pub struct Process {
    /// outbound / inbound, or nginx A / B.
    pub role: &'static str,
    /// The group's process ids, whose memory is summed.
    pub pids: Vec<u32>,
}

/// What one proxy pair did in one case.
pub struct RssOutcome {
    /// Per process group: (role, idle, after the load).
    pub processes: Vec<(&'static str, Memory, Memory)>,
    /// Per process group, the highest summed VmRSS sampled during the load, KiB.
    pub sampled_kib: Vec<u64>,
    /// How long the load took.
    pub elapsed: Duration,
    /// None when every call succeeded and was echoed exactly; else why not.
    pub failure: Option<String>,
    /// Message MiB of the load as the apps exchanged them and as they crossed between the
    /// proxies, when the proxies count them (the sidecars do).
    pub link_mib: Option<(f64, f64)>,
}

/// Runs `case` through the pair whose entry is `entry` and whose processes are
/// `processes` (idle now). Stops early, with a failure, if the machine's available memory
/// falls below `floor_kib`.
pub async fn measure(
    case: RssCase,
    messages: &Arc<BulkMessages>,
    entry: SocketAddr,
    processes: &[Process],
    floor_kib: u64,
) -> RssOutcome {
    let idle: Vec<Memory> = processes.iter().map(|p| Memory::of_all(&p.pids)).collect();
    let sampler = Sampler::start(
        processes.iter().map(|p| p.pids.clone()).collect(),
        floor_kib,
    );
    let tripped = sampler.tripped();
    let start = Instant::now();
    let mut shared = Vec::new();
    for _ in 0..case.connections.unwrap_or(0) {
        match bulk::connect(entry).await {
            Ok(connection) => shared.push(connection),
            Err(err) => panic!("cannot connect to {entry}: {err}"),
        }
    }
    let calls = futures_util::future::join_all((0..case.streams).map(|i| {
        let messages = messages.clone();
        let client = (!shared.is_empty()).then(|| shared[i % shared.len()].0.clone());
        async move {
            match client {
                Some(client) => bulk::call_on(client, entry, &messages).await,
                None => bulk::call(entry, &messages).await,
            }
        }
    }));
    let failure = tokio::select! {
        results = calls => results.into_iter().find_map(Result::err),
        () = tripped => Some(format!(
            "stopped: available memory fell below {} MiB ({} MiB left)",
            floor_kib / 1024,
            available_kib().unwrap_or(0) / 1024
        )),
    };
    let elapsed = start.elapsed();
    for (_, driver) in shared {
        driver.abort();
    }
    let after: Vec<Memory> = processes.iter().map(|p| Memory::of_all(&p.pids)).collect();
    let (sampled_kib, _) = sampler.finish().await;
    RssOutcome {
        processes: processes
            .iter()
            .zip(idle.into_iter().zip(after))
            .map(|(p, (idle, after))| (p.role, idle, after))
            .collect(),
        sampled_kib,
        elapsed,
        failure,
        link_mib: None,
    }
}
