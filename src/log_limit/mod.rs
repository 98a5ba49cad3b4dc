//! Rate-limited warnings: a storm of failing calls (a client cancelling thousands of calls,
//! a peer sending garbage) must not become a storm of identical log lines that drowns the
//! rest and costs the node's log pipeline more than the traffic itself.
//!
//! Each call site has its own [`LogSite`], a token bucket: a burst of [`BURST`] lines goes
//! through at once, then [`LINES_PER_SECOND`]. Lines beyond that are dropped and counted,
//! per site, in `bloscar_log_lines_suppressed_total{site="..."}`; the next line let
//! through says how many were dropped before it (`suppressed=N`). The log is the
//! process's, so the limit and the counter are process-wide too. The HTTP/2 library's
//! own warnings get the same limit per call site from [`DependencyWarnings`].

mod dependencies;

pub use dependencies::DependencyWarnings;

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Lines a site may log at once after a quiet spell.
pub const BURST: f64 = 10.0;
/// Lines a site may log per second once its burst is spent.
pub const LINES_PER_SECOND: f64 = 1.0;

/// A token bucket: up to `burst` tokens, refilled at `per_second`; each admitted event
/// takes one. Time is passed in, so tests decide what time it is.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` before the first event (full).
    updated: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `per_second`.
    pub const fn new(per_second: f64, burst: f64) -> Self {
        TokenBucket {
            per_second,
            burst,
            tokens: burst,
            updated: None,
        }
    }

    /// Takes a token at `now` if there is one. A `now` earlier than a previous one adds
    /// nothing (time does not run backwards for the bucket).
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(updated) = self.updated {
            let elapsed = now.saturating_duration_since(updated).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        }
        if self.updated.is_none_or(|updated| now > updated) {
            self.updated = Some(now);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SiteLabels {
    site: &'static str,
}

/// Lines dropped per site, shared by every [`Metrics`](crate::metrics::Metrics) registry.
static SUPPRESSED: LazyLock<Family<SiteLabels, Counter>> = LazyLock::new(Family::default);

/// Registers `log_lines_suppressed` (a counter per site) in `registry`.
pub(crate) fn register(registry: &mut Registry) {
    registry.register(
        "log_lines_suppressed",
        "Warning lines not logged because their call site was over its rate limit, by site",
        SUPPRESSED.clone(),
    );
}

/// Lines dropped so far at the site called `name`.
pub fn suppressed_total(name: &'static str) -> u64 {
    SUPPRESSED.get_or_create(&SiteLabels { site: name }).get()
}

/// One call site's limit: a `static` beside the `tracing` call it guards.
#[derive(Debug)]
pub struct LogSite {
    name: &'static str,
    state: Mutex<SiteState>,
}

#[derive(Debug)]
struct SiteState {
    bucket: TokenBucket,
    /// Lines dropped since the last one logged.
    suppressed: u64,
}

impl LogSite {
    /// A site labelled `name` in the metric, with the default limit.
    pub const fn new(name: &'static str) -> Self {
        LogSite::with_limit(name, TokenBucket::new(LINES_PER_SECOND, BURST))
    }

    /// A site with its own limit.
    pub const fn with_limit(name: &'static str, bucket: TokenBucket) -> Self {
        LogSite {
            name,
            state: Mutex::new(SiteState {
                bucket,
                suppressed: 0,
            }),
        }
    }

    /// The site's label in the metric.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether to log a line now: `Some(n)` with the lines dropped since the last one
    /// logged, or `None` (the line is dropped and counted).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`admit`](Self::admit) at a given time.
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.bucket.take(now) {
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            drop(state);
            SUPPRESSED
                .get_or_create(&SiteLabels { site: self.name })
                .inc();
            None
        }
    }
}

/// `tracing::warn!` through a [`LogSite`]: logged only when the site admits it, with
/// `suppressed = N` when lines were dropped before it.
macro_rules! warn_limited {
    ($site:expr, $($rest:tt)+) => {
        if let Some(suppressed) = $site.admit() {
            tracing::warn!(suppressed = (suppressed > 0).then_some(suppressed), $($rest)+);
        }
    };
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3.0);
        let admitted: Vec<bool> = (0..5).map(|_| bucket.take(start)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        // Two per second: one token after 500 ms, not before.
        assert!(!bucket.take(at(start, 499)));
        assert!(bucket.take(at(start, 500)));
        assert!(!bucket.take(at(start, 500)));
        // A long quiet spell refills no more than the burst.
        let later = at(start, 60_000);
        let admitted: Vec<bool> = (0..4).map(|_| bucket.take(later)).collect();
        assert_eq!(admitted, [true, true, true, false]);
    }

    #[test]
    fn time_going_backwards_adds_no_tokens() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1.0, 1.0);
        let late = at(start, 10_000);
        assert!(bucket.take(late));
        assert!(!bucket.take(start));
        // The refill counts from the latest time seen.
        assert!(!bucket.take(at(start, 10_500)));
        assert!(bucket.take(at(start, 11_000)));
    }

    #[test]
    fn a_site_says_how_many_lines_it_dropped_and_counts_them() {
        let site = LogSite::with_limit("test_site_counts", TokenBucket::new(1.0, 2.0));
        let start = Instant::now();
        assert_eq!(site.admit_at(start), Some(0));
        assert_eq!(site.admit_at(start), Some(0));
        for _ in 0..7 {
            assert_eq!(site.admit_at(at(start, 100)), None);
        }
        assert_eq!(suppressed_total("test_site_counts"), 7);
        // The next line let through reports the seven, and the count starts again.
        assert_eq!(site.admit_at(at(start, 1000)), Some(7));
        assert_eq!(site.admit_at(at(start, 1100)), None);
        assert_eq!(site.admit_at(at(start, 2000)), Some(1));
        assert_eq!(suppressed_total("test_site_counts"), 8);
    }

    #[test]
    fn the_counter_is_exposed_per_site() {
        let site = LogSite::with_limit("test_site_metric", TokenBucket::new(1.0, 1.0));
        let now = Instant::now();
        assert_eq!(site.admit_at(now), Some(0));
        assert_eq!(site.admit_at(now), None);
        let text = crate::metrics::Metrics::new().render();
        assert!(
            text.contains("bloscar_log_lines_suppressed_total{site=\"test_site_metric\"} 1"),
            "{text}"
        );
    }
}
