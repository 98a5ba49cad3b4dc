//! Resident memory of the sidecars from /proc, sampled on a timer, and the guard that
//! stops a case before the machine runs short of memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A "Name:   123 kB" line of /proc/<pid>/status or /proc/meminfo, in KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        name,
    )
}

/// Resident memory of `pid` now (VmRSS), KiB; None once it has exited.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Peak resident memory of `pid` since it started (VmHWM), KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// Memory the kernel says new allocations can still get without swapping, KiB.
pub fn available_kib() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// One reading of both sidecars: time since the sampler started, VmRSS KiB of each.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// When, counted from the start of sampling.
    pub at: Duration,
    /// VmRSS of each process, in the order they were given (0 once exited).
    pub rss_kib: [u64; 2],
}

/// Samples the VmRSS of two processes every `every` until finished, and trips when the
/// machine's available memory falls below a floor.
pub struct Sampler {
    readings: Arc<Mutex<Vec<Reading>>>,
    trip: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pids` now.
    pub fn start(pids: [u32; 2], every: Duration, floor_kib: u64) -> Sampler {
        let readings = Arc::new(Mutex::new(Vec::new()));
        let (trip_tx, trip) = watch::channel(false);
        let (stop, mut stopped) = watch::channel(false);
        let task = {
            let readings = readings.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = ticks.tick() => {}
                    }
                    let rss_kib = pids.map(|pid| rss_kib(pid).unwrap_or(0));
                    readings.lock().unwrap().push(Reading {
                        at: start.elapsed(),
                        rss_kib,
                    });
                    if available_kib().is_some_and(|kib| kib < floor_kib) {
                        let _ = trip_tx.send(true);
                    }
                }
            })
        };
        Sampler {
            readings,
            trip,
            stop,
            task,
        }
    }

    /// Resolves when available memory has fallen below the floor (never, if it does not).
    pub fn tripped(&self) -> impl Future<Output = ()> + use<> {
        let mut trip = self.trip.clone();
        async move {
            if trip.wait_for(|&t| t).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops sampling: every reading, and whether the floor was crossed.
    pub async fn finish(self) -> (Vec<Reading>, bool) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let tripped = *self.trip.borrow();
        let readings = std::mem::take(&mut *self.readings.lock().unwrap());
        (readings, tripped)
    }
}

/// The highest VmRSS of process `index` among `readings`, KiB.
pub fn highest(readings: &[Reading], index: usize) -> u64 {
    readings.iter().map(|r| r.rss_kib[index]).max().unwrap_or(0)
}
