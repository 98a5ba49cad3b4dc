//! Resident memory of processes from /proc, sampled while a load runs, and a guard that
//! stops a case before the machine runs out of memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the sampler reads /proc.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Memory of one process (or the sum over a group of processes), KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident since the process started (`VmHWM`).
    pub hwm_kib: u64,
}

impl Memory {
    /// The memory of process `pid`, or None once it has exited.
    pub fn of(pid: u32) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Memory {
            rss_kib: kib_field(&status, "VmRSS:")?,
            hwm_kib: kib_field(&status, "VmHWM:")?,
        })
    }

    /// The sum over processes `pids` (those that have exited count 0).
    pub fn of_all(pids: &[u32]) -> Memory {
        pids.iter()
            .filter_map(|&pid| Memory::of(pid))
            .fold(Memory::default(), |sum, m| Memory {
                rss_kib: sum.rss_kib + m.rss_kib,
                hwm_kib: sum.hwm_kib + m.hwm_kib,
            })
    }
}

/// A "Name:   123 kB" line of /proc/<pid>/status or /proc/meminfo, in KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Memory the kernel says new allocations can still get without swapping, KiB.
pub fn available_kib() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// Samples the summed `VmRSS` of groups of processes until stopped; trips its guard
/// when the machine's available memory falls below a floor.
pub struct Sampler {
    highest: Arc<Mutex<Vec<u64>>>,
    tripped: Arc<AtomicBool>,
    trip: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling each group of `groups` (process ids whose RSS is summed).
    pub fn start(groups: Vec<Vec<u32>>, floor_kib: u64) -> Sampler {
        let highest = Arc::new(Mutex::new(vec![0u64; groups.len()]));
        let tripped = Arc::new(AtomicBool::new(false));
        let (trip_tx, trip) = tokio::sync::watch::channel(false);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = {
            let (highest, tripped) = (highest.clone(), tripped.clone());
            tokio::spawn(async move {
                loop {
                    for (i, group) in groups.iter().enumerate() {
                        let rss = Memory::of_all(group).rss_kib;
                        let mut highest = highest.lock().unwrap();
                        highest[i] = highest[i].max(rss);
                    }
                    if available_kib().is_some_and(|kib| kib < floor_kib) {
                        tripped.store(true, Ordering::SeqCst);
                        let _ = trip_tx.send(true);
                    }
                    tokio::select! {
                        _ = stopped.changed() => break,
                        () = tokio::time::sleep(SAMPLE_EVERY) => {}
                    }
                }
            })
        };
        Sampler {
            highest,
            tripped,
            trip,
            stop,
            task,
        }
    }

    /// Resolves when the guard trips (never, if it does not).
    pub fn tripped(&self) -> impl Future<Output = ()> + use<> {
        let mut trip = self.trip.clone();
        async move {
            if trip.wait_for(|&t| t).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops sampling: the highest summed RSS of each group (KiB), and whether the guard
    /// tripped.
    pub async fn finish(self) -> (Vec<u64>, bool) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let highest = self.highest.lock().unwrap().clone();
        (highest, self.tripped.load(Ordering::SeqCst))
    }
}
