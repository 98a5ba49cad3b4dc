//! One pool of permits: a direction of the process's budget, or of a connection's share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Permits for `capacity` bytes, and a quarter of that for bytes kept while waiting for
/// input: partly gathered chunks, and messages held whole while they are gathered (see
/// the module docs of [`crate::budget`]).
#[derive(Clone)]
pub(super) struct Scope {
    permits: Arc<Semaphore>,
    capacity: usize,
    holds: Arc<Semaphore>,
    /// Streams waiting for permits now.
    waiters: Arc<AtomicUsize>,
    /// Woken when a stream starts waiting.
    pressure: Arc<Notify>,
}

/// Counts one stream waiting on a scope for as long as it lives.
pub(super) struct Waiting {
    waiters: Arc<AtomicUsize>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Scope {
    pub(super) fn new(capacity: usize) -> Scope {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        Scope {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            holds: Arc::new(Semaphore::new(capacity / 4)),
            waiters: Arc::default(),
            pressure: Arc::default(),
        }
    }

    /// Counts a stream as waiting, and tells the streams that keep partly gathered
    /// bytes while idle.
    pub(super) fn waiting(&self) -> Waiting {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        self.pressure.notify_waiters();
        Waiting {
            waiters: Arc::clone(&self.waiters),
        }
    }

    /// Whether any stream waits for permits now.
    pub(super) fn under_pressure(&self) -> bool {
        self.waiters.load(Ordering::Acquire) > 0
    }

    /// Resolves when a stream starts waiting.
    pub(super) fn pressure(&self) -> OwnedNotified {
        Arc::clone(&self.pressure).notified_owned()
    }

    /// Registers `bytes` kept by a stream that waits, if the quarter has room for them.
    pub(super) fn try_hold(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        Arc::clone(&self.holds).try_acquire_many_owned(bytes).ok()
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most one request may ask for: what is sure to come back to a waiter while
    /// messages held whole keep all of their quarter.
    pub(super) fn limit(&self) -> usize {
        self.capacity - self.hold_limit()
    }

    /// The most one message held whole may take while it is gathered.
    pub(super) fn hold_limit(&self) -> usize {
        self.capacity / 4
    }

    /// Takes `bytes` permits now, if they are free.
    pub(super) fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        Arc::clone(&self.permits).try_acquire_many_owned(bytes).ok()
    }

    /// Waits for `bytes` permits, in pieces of at most `u32::MAX` (the most a
    /// semaphore hands out at once); `None` only if the semaphore was closed, which
    /// never happens.
    pub(super) async fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        take(&self.permits, bytes).await
    }

    /// Waits for `bytes` of the quarter that messages held whole may take.
    pub(super) async fn take_hold(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        take(&self.holds, bytes).await
    }
}

async fn take(semaphore: &Arc<Semaphore>, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let mut left = bytes;
    let mut taken: Option<OwnedSemaphorePermit> = None;
    loop {
        let piece = u32::try_from(left).unwrap_or(u32::MAX);
        let permit = Arc::clone(semaphore).acquire_many_owned(piece).await.ok()?;
        left -= piece as usize;
        match taken.as_mut() {
            Some(t) => t.merge(permit),
            None => taken = Some(permit),
        }
        if left == 0 {
            return taken;
        }
    }
}
