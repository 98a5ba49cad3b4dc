//! Calls that a client cancels before they are answered, per connection: a connection
//! where most calls end that way is an attack on the work behind the sidecar (the
//! "rapid reset" family, CVE-2023-44487) and is closed.
//!
//! h2 already closes a connection that resets more than
//! [`MAX_PENDING_ACCEPT_RESET_STREAMS`](super::limits::MAX_PENDING_ACCEPT_RESET_STREAMS)
//! streams before the server accepts them. A client can stay under that by waiting until
//! each stream is accepted (and forwarded) before resetting it; every such call still
//! costs an upstream stream opened and reset on the connection that all clients share,
//! and an h2-based upstream treats a run of those as an attack on *it*, closing the
//! shared connection for everyone. This guard closes the one abusive client connection
//! first, as Envoy's premature-reset check does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A call cancelled by the client this soon after it arrived, before its response
/// started, is a premature reset.
pub(super) const PREMATURE_WITHIN: Duration = Duration::from_secs(1);

/// Calls a connection must have made before the guard judges it: a client that cancels
/// its first few calls (a user closing a page, a hedged request) is never closed.
pub(super) const MIN_CALLS: u64 = 100;

/// The share of a connection's calls, premature resets among all its calls since it
/// opened, at which the connection is closed: one half, as in Envoy.
const CLOSE_AT_NUMERATOR: u64 = 1;
const CLOSE_AT_DENOMINATOR: u64 = 2;

/// The premature resets of one connection; clones share the counts.
#[derive(Debug, Clone, Default)]
pub(super) struct ResetGuard {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    calls: AtomicU64,
    premature: AtomicU64,
    tripped: AtomicBool,
    notify: Notify,
}

impl ResetGuard {
    /// Watches one call; `judged` is false for calls the guard must not count (a peer
    /// sidecar's, which carry many clients' cancellations on one connection).
    pub(super) fn call_started(&self, judged: bool) -> CallWatch {
        if judged {
            self.state.calls.fetch_add(1, Ordering::Relaxed);
        }
        CallWatch {
            state: judged.then(|| Arc::clone(&self.state)),
            started: Instant::now(),
        }
    }

    /// Resolves once the connection's calls are mostly premature resets.
    pub(super) async fn tripped(&self) {
        loop {
            let notified = self.state.notify.notified();
            if self.state.tripped.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Calls counted and premature resets among them, for tests.
    #[cfg(test)]
    fn counts(&self) -> (u64, u64) {
        (
            self.state.calls.load(Ordering::Relaxed),
            self.state.premature.load(Ordering::Relaxed),
        )
    }
}

impl State {
    fn premature_reset(&self) {
        let premature = self.premature.fetch_add(1, Ordering::Relaxed) + 1;
        let calls = self.calls.load(Ordering::Relaxed);
        if calls >= MIN_CALLS
            && premature * CLOSE_AT_DENOMINATOR >= calls * CLOSE_AT_NUMERATOR
            && !self.tripped.swap(true, Ordering::AcqRel)
        {
            self.notify.notify_waiters();
        }
    }
}

/// One call being watched: dropped before [`answered`](CallWatch::answered), within
/// [`PREMATURE_WITHIN`] of its start, it counts as a premature reset.
#[derive(Debug)]
pub(super) struct CallWatch {
    state: Option<Arc<State>>,
    started: Instant,
}

impl CallWatch {
    /// The call's response has started: whatever happens to it now is no reset storm.
    pub(super) fn answered(mut self) {
        self.state = None;
    }
}

impl Drop for CallWatch {
    fn drop(&mut self) {
        if let Some(state) = self.state.take()
            && self.started.elapsed() < PREMATURE_WITHIN
        {
            state.premature_reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trips(guard: &ResetGuard) -> bool {
        guard.state.tripped.load(Ordering::Acquire)
    }

    #[test]
    fn answered_calls_are_never_resets() {
        let guard = ResetGuard::default();
        for _ in 0..1000 {
            guard.call_started(true).answered();
        }
        assert_eq!(guard.counts(), (1000, 0));
        assert!(!trips(&guard));
    }

    #[test]
    fn a_connection_of_mostly_cancelled_calls_trips_at_the_minimum() {
        let guard = ResetGuard::default();
        for _ in 0..MIN_CALLS - 1 {
            drop(guard.call_started(true));
        }
        assert!(!trips(&guard), "below the minimum number of calls");
        drop(guard.call_started(true));
        assert_eq!(guard.counts(), (MIN_CALLS, MIN_CALLS));
        assert!(trips(&guard));
    }

    #[test]
    fn half_answered_trips_and_less_than_half_cancelled_does_not() {
        let guard = ResetGuard::default();
        for _ in 0..150 {
            guard.call_started(true).answered();
            drop(guard.call_started(true));
        }
        // Every other call cancelled: one half, as soon as there are enough calls.
        assert!(trips(&guard));

        let guard = ResetGuard::default();
        for _ in 0..300 {
            guard.call_started(true).answered();
            guard.call_started(true).answered();
            drop(guard.call_started(true));
        }
        assert_eq!(guard.counts(), (900, 300));
        assert!(!trips(&guard));
    }

    #[test]
    fn calls_not_judged_count_for_nothing() {
        let guard = ResetGuard::default();
        for _ in 0..1000 {
            drop(guard.call_started(false));
        }
        assert_eq!(guard.counts(), (0, 0));
        assert!(!trips(&guard));
    }

    #[tokio::test]
    async fn tripped_resolves_for_a_waiter_and_after_the_fact() {
        let guard = ResetGuard::default();
        let waiter = tokio::spawn({
            let guard = guard.clone();
            async move { guard.tripped().await }
        });
        tokio::task::yield_now().await;
        for _ in 0..MIN_CALLS {
            drop(guard.call_started(true));
        }
        waiter.await.unwrap();
        // A late waiter sees it at once.
        guard.tripped().await;
    }
}
