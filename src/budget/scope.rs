//! One pool of permits: a direction of the process's budget, or of a connection's share.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits for `capacity` bytes, and a quarter of that which messages held whole may
/// take while they are gathered (see the module docs of [`crate::budget`]).
#[derive(Clone)]
pub(super) struct Scope {
    permits: Arc<Semaphore>,
    capacity: usize,
    holds: Arc<Semaphore>,
}

impl Scope {
    pub(super) fn new(capacity: usize) -> Scope {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        Scope {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            holds: Arc::new(Semaphore::new(capacity / 4)),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most one request may ask for: what is sure to come back to a waiter while
    /// messages held whole keep all of their quarter.
    pub(super) fn limit(&self) -> usize {
        self.capacity - self.hold_limit()
    }

    /// The most messages held whole may take while they are gathered.
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
