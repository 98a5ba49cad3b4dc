//! Thousands of idle and half-open connections to the inbound: 3000 that send nothing
//! and 3000 that send half of the HTTP/2 preface, each held until the sidecar closes it
//! or for 15 s after it connected. The attack lasts as long as that takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::case::Target;
use crate::metrics::Scrape;
use crate::pair::admin_get;

/// Connections that send nothing.
const SILENT: usize = 3000;
/// Connections that send the first 16 of the preface's 24 bytes.
const HALF_OPEN: usize = 3000;
const HALF_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// Connection attempts in flight at once.
const CONNECTING_AT_ONCE: usize = 200;

/// What became of one connection.
enum Fate {
    /// The connection could not be made.
    Failed,
    /// The sidecar closed it this long after the attack started.
    Closed(Duration),
    /// Still open when the attack ended.
    Open,
}

/// Where the connections go and what they share.
struct Plan {
    target: std::net::SocketAddr,
    gate: Semaphore,
    /// Attempts that have connected or failed.
    settled: AtomicUsize,
    start: Instant,
}

/// How long each connection is held after it connected, unless the sidecar closes it
/// first: longer than the handshake timeout (10 s), so that every connection either
/// meets it or shows it was not applied.
const HOLD: Duration = Duration::from_secs(15);

async fn hold(plan: Arc<Plan>, half_open: bool) -> Fate {
    let start = plan.start;
    let permit = plan.gate.acquire().await;
    let connected = TcpStream::connect(plan.target).await;
    drop(permit);
    plan.settled.fetch_add(1, Ordering::Relaxed);
    let Ok(mut socket) = connected else {
        return Fate::Failed;
    };
    let deadline = tokio::time::Instant::now() + HOLD;
    if half_open && socket.write_all(HALF_PREFACE).await.is_err() {
        return Fate::Closed(start.elapsed());
    }
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Fate::Closed(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return Fate::Open,
        }
    }
}

#[derive(Default)]
struct Tally {
    failed: usize,
    closed: Vec<Duration>,
    open: usize,
}

impl Tally {
    fn describe(&mut self, what: &str, total: usize) -> String {
        self.closed.sort();
        let closed = match (self.closed.first(), self.closed.last()) {
            (Some(first), Some(last)) => format!(
                "{} closed by the sidecar between {:.1} and {:.1} s",
                self.closed.len(),
                first.as_secs_f64(),
                last.as_secs_f64()
            ),
            _ => "none closed by the sidecar".into(),
        };
        format!(
            "{total} {what}: {closed}, {} still open {} s after connecting, {} failed to \
             connect",
            self.open,
            HOLD.as_secs(),
            self.failed
        )
    }
}

/// The kernel's count of connections dropped because a listener's accept queue was full
/// (TcpExtListenOverflows, system-wide): a silent client whose handshake the kernel
/// completed but whose connection no accept() took yet looks open to the client, while
/// the sidecar does not know it exists.
fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Opens every connection, holds them for the attack's time, reports their fates.
pub async fn run(target: Target) -> Vec<String> {
    let overflows_before = listen_overflows();
    let start = Instant::now();
    let plan = Arc::new(Plan {
        target: target.inbound,
        gate: Semaphore::new(CONNECTING_AT_ONCE),
        settled: AtomicUsize::new(0),
        start,
    });
    let mut connections = tokio::task::JoinSet::new();
    for i in 0..SILENT + HALF_OPEN {
        let half_open = i % 2 == 1;
        let plan = plan.clone();
        connections.spawn(async move { (half_open, hold(plan, half_open).await) });
    }
    // Once every attempt has settled, what the sidecar says it holds.
    while plan.settled.load(Ordering::Relaxed) < SILENT + HALF_OPEN
        && start.elapsed() < target.duration / 2
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected_after = start.elapsed();
    let metrics = admin_get(target.inbound_admin, "/metrics").await;
    let open_now = Scrape::parse(metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        .sum("bloscar_connections_open", "listener=\"inbound\"");
    let mut tallies = [Tally::default(), Tally::default()];
    while let Some(joined) = connections.join_next().await {
        let Ok((half_open, fate)) = joined else {
            continue;
        };
        let tally = &mut tallies[usize::from(half_open)];
        match fate {
            Fate::Failed => tally.failed += 1,
            Fate::Closed(at) => tally.closed.push(at),
            Fate::Open => tally.open += 1,
        }
    }
    let overflows = match (overflows_before, listen_overflows()) {
        (Some(before), Some(after)) => (after - before).to_string(),
        _ => "unknown".into(),
    };
    vec![
        tallies[0].describe("silent connections", SILENT),
        tallies[1].describe("connections with half a preface", HALF_OPEN),
        format!(
            "all attempts settled {:.1} s into the attack, when the inbound counted \
             {open_now} client connections open; the kernel's accept queues overflowed \
             {overflows} times meanwhile (TcpExtListenOverflows)",
            connected_after.as_secs_f64()
        ),
    ]
}
