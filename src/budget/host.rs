//! The default budget: half of the container's memory limit, read from its cgroup, or
//! [`DEFAULT_BUDGET`] when there is none.
//!
//! Half, because the budget counts message bytes only: the process also needs room for
//! its code, the HTTP/2 buffers the flow-control windows bound, the allocator's slack,
//! and the auto-tuner's samples.

use super::{DEFAULT_BUDGET, MIN_BUDGET};

/// The memory limit of a cgroup v2 container.
pub const CGROUP_V2_MAX: &str = "/sys/fs/cgroup/memory.max";
/// The memory limit of a cgroup v1 container.
pub const CGROUP_V1_LIMIT: &str = "/sys/fs/cgroup/memory/memory.limit_in_bytes";

/// cgroup v1 spells "no limit" as the largest page-aligned signed 64-bit number; any
/// value this large means the same.
const NO_LIMIT_ABOVE: u64 = 1 << 62;

/// The default budget for this process, and the container limit it was derived from
/// (`None`: no limit found, so [`DEFAULT_BUDGET`]).
pub fn default_budget() -> (usize, Option<u64>) {
    let limit = container_limit(|path| std::fs::read_to_string(path).ok());
    (budget_for_limit(limit), limit)
}

/// The container's memory limit in bytes, from `read` (a file's contents by path):
/// cgroup v2 first, then v1; `None` when neither sets one.
pub fn container_limit(read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    match read(CGROUP_V2_MAX) {
        Some(text) => parse_limit(&text),
        None => read(CGROUP_V1_LIMIT).and_then(|text| parse_limit(&text)),
    }
}

fn parse_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes > 0 && bytes < NO_LIMIT_ABOVE)
}

/// Half of `limit`, at least [`MIN_BUDGET`]; [`DEFAULT_BUDGET`] without a limit.
pub fn budget_for_limit(limit: Option<u64>) -> usize {
    match limit {
        Some(limit) => usize::try_from(limit / 2)
            .unwrap_or(usize::MAX)
            .max(MIN_BUDGET),
        None => DEFAULT_BUDGET,
    }
}
