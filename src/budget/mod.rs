//! A process-wide budget for the message bytes the layer holds in flight.
//!
//! Per stream, the layer holds a few chunks; nothing else bounds the sum over streams.
//! A [`MemoryBudget`] does: every byte a stream holds beyond what flows straight through
//! is backed by permits of a byte-counting semaphore, carried with the bytes as a
//! [`Charge`] and given back when the bytes are handed on or dropped. A stream asks for
//! permits before it takes more input ([`Account`]); while none are free it waits, so it
//! stops reading and flow control holds its sender back.
//!
//! How the budget avoids deadlock (every wait ends once the apps read what they were
//! sent):
//!
//! - **One pool per direction.** Requests and responses each get half. A response never
//!   waits for permits held by requests, so two sidecars each full of the other's
//!   unread traffic cannot hold each other up.
//! - **No stream waits holding what only more input can release**, beyond a quarter of
//!   a pool. A stream charges a piece of work whole before it takes it in (a chunk and
//!   its compressed form, a record and what it restores); what it holds then needs
//!   nothing more to be passed on. The input it still needs may be stuck behind frames of
//!   streams that wait for permits on the same HTTP/2 connection, so a partly gathered
//!   piece must not hold permits those streams wait for: a record being gathered is not
//!   charged (it is at most a segment, like the bytes in the flow-control windows), and
//!   the encoder's partly gathered chunk is charged but kept across a wait (for permits,
//!   or for input while others wait for permits: [`Account::poll_pressure`]) only within
//!   a quarter of each pool set aside for such bytes ([`Account::keep_while_waiting`]);
//!   without room there, the encoder sends it on as it is.
//! - **Messages held whole share that quarter.** A message gathered whole is charged
//!   before it is gathered, so it waits for its input holding permits: it takes a place
//!   in the quarter first ([`Hold`]). The other three quarters always come back to the
//!   streams, and no single request is allowed more than those three quarters.
//! - **Per-connection shares.** A downstream connection ([`ConnectionShare`]) may hold at
//!   most a quarter of the budget (at least 64 MiB), under the same rules, so one client
//!   that does not read cannot take everything.
//!
//! Some things cannot wait: one request larger than a stream may ever hold fails at once
//! ([`BudgetError::TooLarge`]), and a wait longer than the wait limit (30 s by default)
//! fails too ([`BudgetError::WaitLimit`]), so that a budget held by clients that never
//! read sheds new calls with RESOURCE_EXHAUSTED instead of hanging them. The wait limit
//! also ends the one stall the rules above leave: messages held whole on one connection
//! waiting, each for its bytes, behind each other.

mod account;
mod charge;
pub mod host;
mod metrics;
mod scope;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use self::account::Account;
pub use self::charge::{Charge, Hold};
pub use self::metrics::MemoryCollector;
use self::scope::Scope;
use crate::locate::Direction;

/// The budget when the container has no memory limit.
pub const DEFAULT_BUDGET: usize = 1 << 30;
/// The smallest budget: below this, a 1 MiB chunk and its compressed form could not
/// be held at all.
pub const MIN_BUDGET: usize = 8 << 20;
/// How long a stream may wait for permits before its call fails.
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(30);
/// The least a downstream connection may hold, whatever the budget's quarter.
pub const MIN_CONNECTION_SHARE: usize = 64 << 20;

/// Why a stream did not get the permits it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// More than one stream may ever hold at once: waiting would never end.
    #[error(
        "needs {need} bytes of the memory budget at once; a call may hold at most {limit} bytes"
    )]
    TooLarge {
        /// Bytes asked for.
        need: usize,
        /// The most one request may ask for.
        limit: usize,
    },
    /// The permits did not come within the wait limit.
    #[error("waited {waited:?} for {need} bytes of the memory budget")]
    WaitLimit {
        /// Bytes asked for.
        need: usize,
        /// How long the stream waited.
        waited: Duration,
    },
}

/// Counters of the budget, read by [`MemoryBudget::stats`] and the metrics collector.
#[derive(Debug, Default)]
struct Counters {
    in_use: AtomicUsize,
    peak: AtomicUsize,
    waits: AtomicU64,
    too_large: AtomicU64,
    wait_limit: AtomicU64,
}

/// What a budget has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// Bytes the budget allows.
    pub capacity: usize,
    /// Bytes held now.
    pub in_use: usize,
    /// The most bytes ever held at once.
    pub peak: usize,
    /// Requests that had to wait for permits.
    pub waits: u64,
    /// Requests refused because one stream may never hold that much.
    pub too_large: u64,
    /// Requests that waited past the wait limit.
    pub wait_limit: u64,
}

struct Shared {
    capacity: usize,
    /// Requests, then responses.
    pools: [Scope; 2],
    /// Bytes a downstream connection may hold per direction.
    connection_share: usize,
    wait_limit: Duration,
    counters: Counters,
}

impl Shared {
    fn pool(&self, direction: Direction) -> &Scope {
        &self.pools[index(direction)]
    }

    fn acquired(&self, bytes: usize) {
        let now = self.counters.in_use.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.counters.peak.fetch_max(now, Ordering::AcqRel);
    }

    fn released(&self, bytes: usize) {
        self.counters.in_use.fetch_sub(bytes, Ordering::AcqRel);
    }
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// A byte budget shared by every layer of a process; cheap to clone.
#[derive(Clone)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("capacity", &self.shared.capacity)
            .field("connection_share", &self.shared.connection_share)
            .finish()
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least [`MIN_BUDGET`]): half for each direction, and a
    /// share per downstream connection of a quarter of it, at least
    /// [`MIN_CONNECTION_SHARE`] and at most all of it.
    pub fn new(bytes: usize) -> MemoryBudget {
        let capacity = bytes.clamp(MIN_BUDGET, Semaphore::MAX_PERMITS);
        let requests = capacity / 2;
        let share = (capacity / 4).max(MIN_CONNECTION_SHARE).min(capacity);
        MemoryBudget {
            shared: Arc::new(Shared {
                capacity,
                pools: [Scope::new(requests), Scope::new(capacity - requests)],
                connection_share: share / 2,
                wait_limit: DEFAULT_WAIT_LIMIT,
                counters: Counters::default(),
            }),
        }
    }

    /// A budget so large that it never makes a stream wait: the default of a layer that
    /// was given none, so that the layer works on its own.
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget::new(Semaphore::MAX_PERMITS)
    }

    /// The same budget with waits limited to `limit` instead of [`DEFAULT_WAIT_LIMIT`].
    /// Only for a budget not yet shared: a clone keeps the old limit.
    pub fn wait_limit(self, limit: Duration) -> MemoryBudget {
        match Arc::try_unwrap(self.shared) {
            Ok(mut shared) => {
                shared.wait_limit = limit;
                MemoryBudget {
                    shared: Arc::new(shared),
                }
            }
            Err(shared) => MemoryBudget { shared },
        }
    }

    /// Bytes the budget allows.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Bytes a downstream connection may hold in each direction.
    pub fn connection_share(&self) -> usize {
        self.shared.connection_share
    }

    /// What the budget has seen so far.
    pub fn stats(&self) -> BudgetStats {
        let c = &self.shared.counters;
        BudgetStats {
            capacity: self.shared.capacity,
            in_use: c.in_use.load(Ordering::Acquire),
            peak: c.peak.load(Ordering::Acquire),
            waits: c.waits.load(Ordering::Relaxed),
            too_large: c.too_large.load(Ordering::Relaxed),
            wait_limit: c.wait_limit.load(Ordering::Relaxed),
        }
    }

    /// A new share for one downstream connection: every call of the connection carries
    /// it (the proxy puts it in the request's extensions).
    pub fn connection(&self) -> ConnectionShare {
        let share = self.shared.connection_share;
        ConnectionShare {
            scopes: Arc::new([Scope::new(share), Scope::new(share)]),
        }
    }

    /// An empty account for one stream going in `direction`, charged to `connection`
    /// as well when the stream has one.
    pub fn account(&self, direction: Direction, connection: Option<&ConnectionShare>) -> Account {
        Account::new(
            Arc::clone(&self.shared),
            direction,
            connection.map(|c| c.scope(direction)),
        )
    }

    /// A collector that reports the budget on every scrape.
    pub fn collector(&self) -> MemoryCollector {
        MemoryCollector::new(self.clone())
    }
}

/// What one downstream connection may hold, per direction; cheap to clone.
#[derive(Clone)]
pub struct ConnectionShare {
    scopes: Arc<[Scope; 2]>,
}

impl std::fmt::Debug for ConnectionShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionShare")
            .field("capacity", &self.scopes[0].capacity())
            .finish()
    }
}

impl ConnectionShare {
    fn scope(&self, direction: Direction) -> Scope {
        self.scopes[index(direction)].clone()
    }
}
