//! `process_*` metrics read from `/proc/self` at scrape time (Linux only; elsewhere the
//! family is left out rather than reported as zero).
//!
//! Memory is what an operator of a buffering sidecar watches first, so these follow the
//! names every Prometheus client library uses, without the `bloscar_` prefix.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU times in `/proc/<pid>/stat` in USER_HZ, which the kernel's ABI fixes
/// at 100 on every architecture it exposes it to user space, whatever the kernel's HZ.
const USER_HZ: f64 = 100.0;

/// Reads the process figures on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Resident set size in bytes.
    pub resident_bytes: u64,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors, when not unlimited.
    pub max_fds: Option<u64>,
}

/// Reads `/proc/self`; `None` where it is not there (not Linux).
pub fn read() -> Option<Reading> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    Some(Reading {
        resident_bytes: resident_kib(&status)? * 1024,
        cpu_seconds: cpu_ticks(&stat)? as f64 / USER_HZ,
        // read_dir's own descriptor is in the listing while it is read.
        open_fds: open_fds.saturating_sub(1),
        max_fds: max_open_files(&limits),
    })
}

/// `VmRSS` of `/proc/self/status`, in KiB.
fn resident_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `/proc/self/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The soft limit on the "Max open files" line of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(r) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time the process has used, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the process, in bytes",
                Some(r.resident_bytes),
            ),
            (
                "process_open_fds",
                "File descriptors the process has open",
                Some(r.open_fds),
            ),
            (
                "process_max_fds",
                "The process's soft limit on open file descriptors",
                r.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let g = ConstGauge::new(value as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(
            resident_kib("Name:\tx\nVmRSS:\t  2048 kB\nVmSwap: 0 kB\n"),
            Some(2048)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files unlimited unlimited files"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let r = read().expect("Linux has /proc/self");
        assert!(r.resident_bytes > 0);
        assert!(r.open_fds >= 3, "{r:?}");
    }
}
