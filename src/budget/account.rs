//! One stream's dealings with the budget: permits reserved ahead of the bytes they will
//! stand for (its credit), taken from as bytes come in.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::futures::OwnedNotified;

use super::charge::Hold;
use super::scope::Scope;
use super::{BudgetError, Charge, Shared};
use crate::locate::Direction;

type Acquire<T> = Pin<Box<dyn Future<Output = Result<T, BudgetError>> + Send>>;

/// A stream's account with a [`MemoryBudget`](super::MemoryBudget) for one direction.
///
/// The stream reserves what a piece of work will hold ([`Account::poll_reserve`]), then
/// takes charges out of that credit for the bytes it keeps ([`Account::take`]). Dropping
/// the account gives back its credit and abandons any wait.
pub struct Account {
    shared: Arc<Shared>,
    direction: Direction,
    pool: Scope,
    connection: Option<Scope>,
    credit: Charge,
    /// A wait in progress, for this many more bytes.
    waiting: Option<(usize, Acquire<Charge>)>,
    /// A wait for a hold in progress.
    holding: Option<Acquire<Hold>>,
    /// Registrations of partly gathered bytes kept while the stream waits.
    kept: Vec<OwnedSemaphorePermit>,
    /// Listening for streams that start to wait.
    pressure: Vec<Pin<Box<OwnedNotified>>>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("direction", &self.direction)
            .field("credit", &self.credit.bytes())
            .field("waiting", &self.waiting.as_ref().map(|(n, _)| *n))
            .finish()
    }
}

impl Account {
    pub(super) fn new(
        shared: Arc<Shared>,
        direction: Direction,
        connection: Option<Scope>,
    ) -> Account {
        Account {
            pool: shared.pool(direction).clone(),
            shared,
            direction,
            connection,
            credit: Charge::none(),
            waiting: None,
            holding: None,
            kept: Vec::new(),
            pressure: Vec::new(),
        }
    }

    /// An empty account charged to the same pools, e.g. for a task of the stream.
    pub fn sibling(&self) -> Account {
        Account::new(
            Arc::clone(&self.shared),
            self.direction,
            self.connection.clone(),
        )
    }

    /// Bytes reserved and not yet taken.
    pub fn credit(&self) -> usize {
        self.credit.bytes()
    }

    /// The most one reservation may add: beyond this, a wait might never end.
    pub fn limit(&self) -> usize {
        let pool = self.pool.limit();
        self.connection
            .as_ref()
            .map_or(pool, |c| pool.min(c.limit()))
    }

    /// The most one message held whole may take of its quarter ([`Account::poll_hold`]).
    pub fn hold_limit(&self) -> usize {
        let pool = self.pool.hold_limit();
        self.connection
            .as_ref()
            .map_or(pool, |c| pool.min(c.hold_limit()))
    }

    /// A charge of `n` bytes out of the credit (of all of it, if there is less).
    pub fn take(&mut self, n: usize) -> Charge {
        self.credit.split(n)
    }

    /// Gives back whatever credit exceeds `keep` bytes.
    pub fn shed_to(&mut self, keep: usize) {
        let excess = self.credit.bytes().saturating_sub(keep);
        drop(self.credit.split(excess));
    }

    /// Whether a wait for permits is in progress.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Brings the credit to `total` bytes if the permits are free now; `Ok(false)` when
    /// they are not (or others are already waiting in this account).
    pub fn try_reserve(&mut self, total: usize) -> Result<bool, BudgetError> {
        let Some(need) = total.checked_sub(self.credit.bytes()).filter(|&n| n > 0) else {
            return Ok(true);
        };
        self.check(need)?;
        if self.waiting.is_some() {
            return Ok(false);
        }
        let connection = match &self.connection {
            Some(scope) => match scope.try_take(need) {
                Some(permit) => Some(permit),
                None => return Ok(false),
            },
            None => None,
        };
        let Some(pool) = self.pool.try_take(need) else {
            return Ok(false);
        };
        self.credit.merge(Charge::new(
            Arc::clone(&self.shared),
            need,
            pool,
            connection,
        ));
        Ok(true)
    }

    /// Registers `bytes` that the stream keeps while it waits (for permits or for
    /// input) and that only more input can release, such as a partly gathered chunk, in
    /// the quarter of the pools set aside for what is held while waiting. `false` when
    /// the quarter is full: the stream must then send those bytes on before it waits.
    /// The registration lasts until [`Account::stop_keeping`].
    pub fn keep_while_waiting(&mut self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let Some(pool) = self.pool.try_hold(bytes) else {
            return false;
        };
        let connection = match &self.connection {
            Some(scope) => match scope.try_hold(bytes) {
                Some(permit) => Some(permit),
                None => return false,
            },
            None => None,
        };
        self.kept.push(pool);
        self.kept.extend(connection);
        true
    }

    /// Whether bytes are registered by [`Account::keep_while_waiting`].
    pub fn is_keeping(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Ends the registration of [`Account::keep_while_waiting`].
    pub fn stop_keeping(&mut self) {
        self.kept.clear();
    }

    /// Ready once some stream waits for permits of this account's pools: a stream that
    /// is idle (waiting for input) while it keeps charged bytes that only more input can
    /// release should then register them or send them on. Pending registers the waker.
    pub fn poll_pressure(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let scopes = std::iter::once(&self.pool).chain(self.connection.as_ref());
        if self.pressure.is_empty() {
            self.pressure = scopes
                .clone()
                .map(|scope| Box::pin(scope.pressure()))
                .collect();
            // Listening before looking: a wait that starts in between is not missed.
            for notified in &mut self.pressure {
                notified.as_mut().enable();
            }
        }
        let woken = self
            .pressure
            .iter_mut()
            .any(|notified| notified.as_mut().poll(cx).is_ready());
        let pressed = self
            .connection
            .iter()
            .chain(std::iter::once(&self.pool))
            .any(|scope| scope.under_pressure());
        if woken || pressed {
            self.pressure.clear();
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// A place for `bytes` of a message held whole while it is gathered, waiting for
    /// one as long as it takes (up to the wait limit). Such a message waits for its bytes
    /// while holding the permits they need; keeping all such messages within a quarter of
    /// each pool leaves the rest to streams, which never wait holding permits. Fails at
    /// once beyond [`Account::hold_limit`].
    pub fn poll_hold(
        &mut self,
        cx: &mut Context<'_>,
        bytes: usize,
    ) -> Poll<Result<Hold, BudgetError>> {
        if self.holding.is_none() {
            let limit = self.hold_limit();
            if bytes > limit {
                self.shared
                    .counters
                    .too_large
                    .fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(Err(BudgetError::TooLarge { need: bytes, limit }));
            }
            if bytes == 0 {
                return Poll::Ready(Ok(Hold::default()));
            }
            self.holding = Some(self.acquire_hold(bytes));
        }
        let Some(future) = self.holding.as_mut() else {
            unreachable!("a wait was just started");
        };
        let result = std::task::ready!(future.as_mut().poll(cx));
        self.holding = None;
        if result.is_err() {
            self.shared
                .counters
                .wait_limit
                .fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(result)
    }

    /// Brings the credit to `total` bytes, waiting for permits as long as it takes (up
    /// to the budget's wait limit). Fails at once when the bytes missing exceed
    /// [`Account::limit`].
    pub fn poll_reserve(
        &mut self,
        cx: &mut Context<'_>,
        total: usize,
    ) -> Poll<Result<(), BudgetError>> {
        loop {
            if self.credit.bytes() >= total {
                return Poll::Ready(Ok(()));
            }
            if self.waiting.is_none() {
                self.try_reserve(total)?;
                if self.credit.bytes() >= total {
                    continue;
                }
                let need = total - self.credit.bytes();
                self.shared.counters.waits.fetch_add(1, Ordering::Relaxed);
                self.waiting = Some((need, self.acquire(need)));
            }
            let Some((_, future)) = self.waiting.as_mut() else {
                unreachable!("a wait was just started");
            };
            match future.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    self.waiting = None;
                    match result {
                        Ok(charge) => self.credit.merge(charge),
                        Err(err) => {
                            self.shared
                                .counters
                                .wait_limit
                                .fetch_add(1, Ordering::Relaxed);
                            return Poll::Ready(Err(err));
                        }
                    }
                }
            }
        }
    }

    /// [`Account::poll_reserve`] as a future.
    pub async fn reserve(&mut self, total: usize) -> Result<(), BudgetError> {
        std::future::poll_fn(|cx| self.poll_reserve(cx, total)).await
    }

    fn check(&self, need: usize) -> Result<(), BudgetError> {
        let limit = self.limit();
        if need > limit {
            self.shared
                .counters
                .too_large
                .fetch_add(1, Ordering::Relaxed);
            return Err(BudgetError::TooLarge { need, limit });
        }
        Ok(())
    }

    /// Waits for `need` permits of the connection (first), then of the pool, within the
    /// wait limit. The order is the same for every stream, so no two wait on each other.
    fn acquire(&self, need: usize) -> Acquire<Charge> {
        let shared = Arc::clone(&self.shared);
        let pool = self.pool.clone();
        let connection = self.connection.clone();
        Box::pin(async move {
            let started = Instant::now();
            let limit = shared.wait_limit;
            let taken = tokio::time::timeout(limit, async {
                // Counted as waiting while it waits, so that idle streams keeping
                // partly gathered bytes let them go.
                let _waiting = (
                    pool.waiting(),
                    connection.as_ref().map(|scope| scope.waiting()),
                );
                let connection = match &connection {
                    Some(scope) => Some(scope.take(need).await?),
                    None => None,
                };
                let pool = pool.take(need).await?;
                Some((pool, connection))
            })
            .await;
            match taken {
                Ok(Some((pool, connection))) => Ok(Charge::new(shared, need, pool, connection)),
                // A closed semaphore (never done) or the limit passed.
                Ok(None) | Err(_) => Err(BudgetError::WaitLimit {
                    need,
                    waited: started.elapsed(),
                }),
            }
        })
    }
}

impl Account {
    /// Waits for a hold of `bytes` in the connection's quarter (first), then the pool's.
    fn acquire_hold(&self, bytes: usize) -> Acquire<Hold> {
        let limit = self.shared.wait_limit;
        let pool = self.pool.clone();
        let connection = self.connection.clone();
        Box::pin(async move {
            let started = Instant::now();
            let taken = tokio::time::timeout(limit, async {
                let mut permits = Vec::new();
                if let Some(scope) = &connection {
                    permits.push(scope.take_hold(bytes).await?);
                }
                permits.push(pool.take_hold(bytes).await?);
                Some(permits)
            })
            .await;
            match taken {
                Ok(Some(permits)) => Ok(Hold::new(permits)),
                Ok(None) | Err(_) => Err(BudgetError::WaitLimit {
                    need: bytes,
                    waited: started.elapsed(),
                }),
            }
        })
    }
}
