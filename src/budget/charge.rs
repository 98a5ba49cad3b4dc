//! Permits carried with the bytes they stand for.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::Shared;

/// Permits for `bytes` bytes of a budget (and of a connection's share, when the stream
/// has one), given back when the charge is dropped: keep it with the bytes it stands
/// for, and drop it when they are handed on.
#[derive(Default)]
pub struct Charge {
    bytes: usize,
    pool: Option<OwnedSemaphorePermit>,
    connection: Option<OwnedSemaphorePermit>,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Charge {
    /// A charge of nothing.
    pub fn none() -> Charge {
        Charge::default()
    }

    pub(super) fn new(
        shared: Arc<Shared>,
        bytes: usize,
        pool: OwnedSemaphorePermit,
        connection: Option<OwnedSemaphorePermit>,
    ) -> Charge {
        shared.acquired(bytes);
        Charge {
            bytes,
            pool: Some(pool),
            connection,
            shared: Some(shared),
        }
    }

    /// Bytes the charge stands for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Moves `n` bytes (all of them, if it holds fewer) into a charge of their own.
    pub fn split(&mut self, n: usize) -> Charge {
        let n = n.min(self.bytes);
        if n == self.bytes {
            return std::mem::take(self);
        }
        if n == 0 {
            return Charge::none();
        }
        self.bytes -= n;
        Charge {
            bytes: n,
            pool: self.pool.as_mut().and_then(|p| p.split(n)),
            connection: self.connection.as_mut().and_then(|p| p.split(n)),
            shared: self.shared.clone(),
        }
    }

    /// Adds `other` (of the same account) to this charge.
    pub fn merge(&mut self, mut other: Charge) {
        if other.bytes == 0 {
            return;
        }
        if self.bytes == 0 {
            std::mem::swap(self, &mut other);
            return;
        }
        self.bytes += std::mem::take(&mut other.bytes);
        for (mine, theirs) in [
            (&mut self.pool, other.pool.take()),
            (&mut self.connection, other.connection.take()),
        ] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.merge(t),
                (None, Some(t)) => *mine = Some(t),
                (_, None) => {}
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        // Counted out before the permits go back, so that the count never exceeds
        // what the semaphores allow.
        if let Some(shared) = &self.shared {
            shared.released(self.bytes);
        }
    }
}

/// A message held whole's place in the quarter of the pools that such messages may
/// take while they are gathered (see the module docs of [`crate::budget`]). It stands
/// for no memory of its own (the bytes are in a [`Charge`]); dropping it gives the
/// place back.
#[derive(Debug, Default)]
pub struct Hold {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Hold {
    pub(super) fn new(permits: Vec<OwnedSemaphorePermit>) -> Hold {
        Hold { permits }
    }

    /// Bytes the hold stands for.
    pub fn bytes(&self) -> usize {
        self.permits
            .first()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}
