//! How fast the link to a peer really is, measured from live traffic (no I/O here: the
//! caller times transfers and feeds the samples).
//!
//! A [`LinkEstimator`] keeps the last [`WINDOW`] accepted samples and answers their
//! median, over the samples no older than [`HORIZON`] before the newest one:
//!
//! - a change of the link is followed within [`WINDOW`]`/2 + 1` samples (3), or at once
//!   when the previous samples are more than [`HORIZON`] older than the new one;
//! - one odd sample (a stall, a burst into a socket buffer) does not move the median;
//! - after [`FORGET_AFTER`] without a sample the estimate is forgotten ([`None`]): the
//!   network path may have changed while nothing was sent.
//!
//! An exponentially weighted average would follow a change as quickly with a large weight,
//! but then one outlier moves it a lot; the median of a few recent samples does not.
//!
//! Samples come in two kinds. [`SampleKind::Exact`]: the link was the bottleneck while
//! the bytes crossed (the receiver timing a stream that arrived back to back, say).
//! [`SampleKind::AtLeast`]: the sender may have been slower than the link, so the link is
//! at least this fast; such a sample is accepted only when it is above the current
//! estimate, so it can raise the estimate but never lower it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Samples of fewer bytes say more about latency and buffers than about bandwidth.
pub const MIN_SAMPLE_BYTES: u64 = 256 * 1024;
/// Samples shorter than this are below the resolution of timers and schedulers.
pub const MIN_SAMPLE_SECS: f64 = 0.002;
/// Samples the median is taken over.
pub const WINDOW: usize = 5;
/// Samples older than this before the newest one no longer count.
pub const HORIZON: Duration = Duration::from_secs(10);
/// Without a sample for this long, the estimate is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Peers a [`PeerLinks`] remembers by default.
pub const DEFAULT_MAX_PEERS: usize = 1024;

/// What a sample says about the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// The link was the bottleneck while these bytes crossed: the rate is the link's.
    Exact,
    /// The sender may have been the bottleneck: the link is at least this fast.
    AtLeast,
}

/// Bytes that crossed the link in some time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    /// Bytes that crossed.
    pub bytes: u64,
    /// Seconds they took.
    pub secs: f64,
    /// What the sample says about the link.
    pub kind: SampleKind,
}

impl LinkSample {
    /// Bytes per second, when the sample is large and long enough to mean anything.
    pub fn rate(&self) -> Option<f64> {
        let meaningful =
            self.bytes >= MIN_SAMPLE_BYTES && self.secs.is_finite() && self.secs >= MIN_SAMPLE_SECS;
        meaningful.then(|| self.bytes as f64 / self.secs)
    }
}

/// The estimated goodput of one link, in bytes per second; cheap to share (`Arc`) and
/// to update from several threads (one short lock per call).
#[derive(Debug, Default)]
pub struct LinkEstimator {
    window: Mutex<Window>,
}

/// The last accepted samples, a ring in arrival order.
#[derive(Debug, Default)]
struct Window {
    samples: [(Option<Instant>, f64); WINDOW],
    next: usize,
}

impl Window {
    fn push(&mut self, at: Instant, rate: f64) {
        self.samples[self.next] = (Some(at), rate);
        self.next = (self.next + 1) % WINDOW;
    }

    fn rate(&self, now: Instant) -> Option<f64> {
        let newest = self.samples.iter().filter_map(|(t, _)| *t).max()?;
        if now.saturating_duration_since(newest) > FORGET_AFTER {
            return None;
        }
        let mut recent = [0.0; WINDOW];
        let mut n = 0;
        for &(t, rate) in &self.samples {
            if t.is_some_and(|t| newest.saturating_duration_since(t) <= HORIZON) {
                recent[n] = rate;
                n += 1;
            }
        }
        let recent = &mut recent[..n];
        recent.sort_by(f64::total_cmp);
        // The upper median of an even count: with two samples, the newer link is as
        // likely the faster one, and storing on a link that is faster than estimated
        // costs less than compressing on one that is slower.
        Some(recent[n / 2])
    }
}

impl LinkEstimator {
    /// An estimator with no samples.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a sample measured at `now`; `false` when it was ignored (too small or too
    /// short, or an [`SampleKind::AtLeast`] not above the current estimate).
    pub fn record(&self, sample: LinkSample, now: Instant) -> bool {
        let Some(rate) = sample.rate() else {
            return false;
        };
        let mut window = lock(&self.window);
        if sample.kind == SampleKind::AtLeast && window.rate(now).is_some_and(|r| rate <= r) {
            return false;
        }
        window.push(now, rate);
        true
    }

    /// The estimated rate in bytes per second at `now`; `None` before the first sample
    /// and after [`FORGET_AFTER`] without one.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        lock(&self.window).rate(now)
    }
}

/// One [`LinkEstimator`] per peer, at most `max_peers` of them: a new peer beyond that
/// replaces the one used least recently.
#[derive(Debug)]
pub struct PeerLinks {
    max_peers: usize,
    peers: Mutex<Peers>,
}

#[derive(Debug, Default)]
struct Peers {
    by_key: HashMap<String, (Arc<LinkEstimator>, u64)>,
    /// Incremented on every use; a peer's last use orders the eviction.
    clock: u64,
}

impl Default for PeerLinks {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PEERS)
    }
}

impl PeerLinks {
    /// A map that remembers at most `max_peers` peers (at least one).
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers: max_peers.max(1),
            peers: Mutex::new(Peers::default()),
        }
    }

    /// The estimator of `peer`, created when the peer is new.
    pub fn get(&self, peer: &str) -> Arc<LinkEstimator> {
        let mut peers = lock(&self.peers);
        peers.clock += 1;
        let clock = peers.clock;
        if let Some((link, used)) = peers.by_key.get_mut(peer) {
            *used = clock;
            return Arc::clone(link);
        }
        if peers.by_key.len() >= self.max_peers {
            // A linear scan, but only when a new peer arrives at a full map.
            let oldest = peers
                .by_key
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                peers.by_key.remove(&oldest);
            }
        }
        let link = Arc::new(LinkEstimator::new());
        peers
            .by_key
            .insert(peer.to_owned(), (Arc::clone(&link), clock));
        link
    }

    /// Feeds a sample of `peer`'s link; see [`LinkEstimator::record`].
    pub fn record(&self, peer: &str, sample: LinkSample, now: Instant) -> bool {
        self.get(peer).record(sample, now)
    }

    /// The estimated rate of `peer`'s link in bytes per second, `None` when unknown.
    pub fn rate(&self, peer: &str, now: Instant) -> Option<f64> {
        let link = {
            let mut peers = lock(&self.peers);
            peers.clock += 1;
            let clock = peers.clock;
            let (link, used) = peers.by_key.get_mut(peer)?;
            *used = clock;
            Arc::clone(link)
        };
        link.rate(now)
    }

    /// Peers remembered.
    pub fn len(&self) -> usize {
        lock(&self.peers).by_key.len()
    }

    /// Whether no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned lock only means a thread panicked holding it; every update leaves the data
/// consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: f64 = 1e6 / 8.0;

    /// A sample of 1 MB at `mbps` Mbit/s.
    fn at(mbps: f64, kind: SampleKind) -> LinkSample {
        let bytes = 1_000_000;
        LinkSample {
            bytes,
            secs: bytes as f64 / (mbps * MBIT),
            kind,
        }
    }

    fn mbps(rate: Option<f64>) -> f64 {
        rate.expect("an estimate") / MBIT
    }

    fn close(a: f64, b: f64) -> bool {
        (a / b - 1.0).abs() < 1e-9
    }

    #[test]
    fn follows_a_rate_change_within_three_samples_and_back() {
        let link = LinkEstimator::new();
        let t0 = Instant::now();
        let mut now = t0;
        let mut step = |link: &LinkEstimator, rate, kind| {
            now += Duration::from_millis(100);
            assert!(link.record(at(rate, kind), now));
            mbps(link.rate(now))
        };
        for _ in 0..5 {
            assert!(close(step(&link, 100.0, SampleKind::Exact), 100.0));
        }
        // 100 -> 1000 Mbit/s: the median moves on the third sample.
        assert!(close(step(&link, 1000.0, SampleKind::Exact), 100.0));
        assert!(close(step(&link, 1000.0, SampleKind::Exact), 100.0));
        assert!(close(step(&link, 1000.0, SampleKind::Exact), 1000.0));
        assert!(close(step(&link, 1000.0, SampleKind::Exact), 1000.0));
        assert!(close(step(&link, 1000.0, SampleKind::Exact), 1000.0));
        // And back down.
        assert!(close(step(&link, 100.0, SampleKind::Exact), 1000.0));
        assert!(close(step(&link, 100.0, SampleKind::Exact), 1000.0));
        assert!(close(step(&link, 100.0, SampleKind::Exact), 100.0));
    }

    #[test]
    fn one_outlier_does_not_move_the_estimate() {
        let link = LinkEstimator::new();
        let mut now = Instant::now();
        for rate in [500.0, 500.0, 20.0, 500.0, 5000.0, 500.0] {
            now += Duration::from_millis(50);
            link.record(at(rate, SampleKind::Exact), now);
            if rate == 500.0 {
                assert!(close(mbps(link.rate(now)), 500.0));
            }
        }
    }

    #[test]
    fn a_sample_after_a_quiet_spell_replaces_the_old_ones() {
        let link = LinkEstimator::new();
        let t0 = Instant::now();
        for i in 0..5 {
            link.record(at(1000.0, SampleKind::Exact), t0 + Duration::from_millis(i));
        }
        let later = t0 + HORIZON + Duration::from_secs(1);
        link.record(at(100.0, SampleKind::Exact), later);
        assert!(close(mbps(link.rate(later)), 100.0));
    }

    #[test]
    fn forgets_after_a_long_idle_time() {
        let link = LinkEstimator::new();
        let t0 = Instant::now();
        assert_eq!(link.rate(t0), None);
        link.record(at(1000.0, SampleKind::Exact), t0);
        assert!(link.rate(t0 + FORGET_AFTER).is_some());
        assert_eq!(link.rate(t0 + FORGET_AFTER + Duration::from_secs(1)), None);
    }

    #[test]
    fn lower_bounds_only_raise_the_estimate() {
        let link = LinkEstimator::new();
        let mut now = Instant::now();
        // A lower bound is better than nothing.
        assert!(link.record(at(300.0, SampleKind::AtLeast), now));
        assert!(close(mbps(link.rate(now)), 300.0));
        for _ in 0..5 {
            now += Duration::from_millis(100);
            link.record(at(100.0, SampleKind::Exact), now);
        }
        assert!(close(mbps(link.rate(now)), 100.0));
        // A slow sender says nothing about a slower link...
        now += Duration::from_millis(100);
        assert!(!link.record(at(50.0, SampleKind::AtLeast), now));
        assert!(close(mbps(link.rate(now)), 100.0));
        // ...but a fast one proves the link got faster: three of them move the median.
        for i in 0..3 {
            now += Duration::from_millis(100);
            assert!(link.record(at(1000.0, SampleKind::AtLeast), now));
            let expected = if i < 2 { 100.0 } else { 1000.0 };
            assert!(close(mbps(link.rate(now)), expected));
        }
    }

    #[test]
    fn ignores_samples_too_small_or_short_to_mean_anything() {
        let link = LinkEstimator::new();
        let now = Instant::now();
        let small = LinkSample {
            bytes: MIN_SAMPLE_BYTES - 1,
            secs: 1.0,
            kind: SampleKind::Exact,
        };
        let short = LinkSample {
            bytes: 10 << 20,
            secs: MIN_SAMPLE_SECS / 2.0,
            kind: SampleKind::Exact,
        };
        let broken = LinkSample {
            bytes: 10 << 20,
            secs: f64::NAN,
            kind: SampleKind::Exact,
        };
        for s in [small, short, broken] {
            assert!(!link.record(s, now));
        }
        assert_eq!(link.rate(now), None);
    }

    #[test]
    fn peers_are_bounded_and_the_least_recently_used_goes_first() {
        let peers = PeerLinks::new(2);
        let now = Instant::now();
        assert!(peers.is_empty());
        peers.record("a", at(100.0, SampleKind::Exact), now);
        peers.record("b", at(1000.0, SampleKind::Exact), now);
        // "a" is used again, so "b" is the least recently used when "c" arrives.
        assert!(close(mbps(peers.rate("a", now)), 100.0));
        peers.record("c", at(10.0, SampleKind::Exact), now);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers.rate("b", now), None);
        assert!(close(mbps(peers.rate("a", now)), 100.0));
        assert!(close(mbps(peers.rate("c", now)), 10.0));
        // The same estimator is shared by every caller of one peer.
        assert!(Arc::ptr_eq(&peers.get("a"), &peers.get("a")));
    }

    #[test]
    fn is_shared_across_threads() {
        let link = Arc::new(LinkEstimator::new());
        let now = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let link = Arc::clone(&link);
                s.spawn(move || {
                    for _ in 0..100 {
                        link.record(at(400.0, SampleKind::Exact), now);
                    }
                });
            }
        });
        assert!(close(mbps(link.rate(now)), 400.0));
    }
}
