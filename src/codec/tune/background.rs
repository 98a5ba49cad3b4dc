//! Searching off the message path: a bounded queue served by a few worker threads, a
//! per-second budget, and a way to wait until every queued search is done.
//!
//! A job carries its own copy of the sample (at most
//! [`TunerConfig::sample_block`](super::TunerConfig::sample_block) x
//! [`sample_blocks`](super::TunerConfig::sample_blocks) bytes), so the queue holds at
//! most `search_queue` such copies. When the queue is full the search is not started and
//! the key is tried again on a later message.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::stats::TuneReason;
use crate::DType;

/// Who a search is for: the key's parts, to recognise its entry when the result comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ident {
    pub method: Box<str>,
    pub model: Box<str>,
    pub name: Box<str>,
    pub dtype: DType,
}

/// One search to run.
#[derive(Debug)]
pub(super) struct Job {
    pub key: u64,
    pub ident: Ident,
    pub sample: Vec<u8>,
    /// Bytes of the tensor the sample came from.
    pub len: usize,
    pub elem_size: usize,
    pub reason: TuneReason,
}

/// The sending end of the queue; dropping it lets the workers finish and exit.
#[derive(Debug)]
pub(super) struct Workers {
    queue: SyncSender<Job>,
}

impl Workers {
    /// Starts `threads` workers (at least one) running `run` on each job of a queue of
    /// `capacity` jobs; `None` when no thread could be started.
    pub fn start(
        threads: usize,
        capacity: usize,
        run: Arc<dyn Fn(Job) + Send + Sync>,
    ) -> Option<Self> {
        let (queue, jobs) = mpsc::sync_channel(capacity.max(1));
        let jobs = Arc::new(Mutex::new(jobs));
        let mut started = 0;
        for i in 0..threads.max(1) {
            let (jobs, run) = (Arc::clone(&jobs), Arc::clone(&run));
            let spawned = std::thread::Builder::new()
                .name(format!("bloscar-tuner-{i}"))
                .spawn(move || serve(&jobs, &*run));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "could not start a tuner search thread"),
            }
        }
        (started > 0).then_some(Self { queue })
    }

    /// Queues `job`; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

fn serve(jobs: &Mutex<Receiver<Job>>, run: &(dyn Fn(Job) + Send + Sync)) {
    loop {
        // Only one idle worker waits in `recv` at a time; the others wait for the lock.
        let job = lock(jobs).recv();
        let Ok(job) = job else {
            return;
        };
        // A search that panics must not take the worker with it.
        if catch_unwind(AssertUnwindSafe(|| run(job))).is_err() {
            tracing::warn!("a tuner search panicked");
        }
    }
}

/// Searches queued or running, and a way to wait until there are none.
#[derive(Debug, Default)]
pub(super) struct Pending {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Pending {
    pub fn add(&self) {
        *lock(&self.count) += 1;
    }

    pub fn done(&self) {
        let mut count = lock(&self.count);
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.idle.notify_all();
        }
    }

    pub fn wait_idle(&self) {
        let mut count = lock(&self.count);
        while *count > 0 {
            count = self.idle.wait(count).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Marks a job done when dropped, also when the search panicked.
pub(super) struct DoneGuard<'a>(pub &'a Pending);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// A token bucket: at most `per_sec` searches per second on average, and bursts of up
/// to `per_sec` (at least one) when it has been idle.
#[derive(Debug)]
pub(super) struct Budget {
    per_sec: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    /// A budget of `per_sec` searches per second; 0 (or less, or infinite) is no limit.
    pub fn new(per_sec: f64) -> Self {
        let per_sec = if per_sec > 0.0 && per_sec.is_finite() {
            per_sec
        } else {
            f64::INFINITY
        };
        let burst = per_sec.max(1.0);
        Self {
            per_sec,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one search from the budget; `false` when it is spent.
    pub fn take(&self) -> bool {
        if self.per_sec.is_infinite() {
            return true;
        }
        let now = Instant::now();
        let mut state = lock(&self.state);
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.per_sec)
            .min(self.burst);
        let (left, granted) = if refilled >= 1.0 {
            (refilled - 1.0, true)
        } else {
            (refilled, false)
        };
        *state = (left, now);
        granted
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_grants_its_burst_then_refuses() {
        // One search per 1000 s: the burst is one search, and no test runs long enough
        // to earn a second.
        let budget = Budget::new(0.001);
        assert!(budget.take());
        assert!(!budget.take());
        let unlimited = Budget::new(0.0);
        assert!((0..1000).all(|_| unlimited.take()));
    }

    #[test]
    fn workers_run_every_queued_job_and_report_idle() {
        let pending = Arc::new(Pending::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let run = {
            let (pending, seen) = (Arc::clone(&pending), Arc::clone(&seen));
            Arc::new(move |job: Job| {
                let _done = DoneGuard(&pending);
                lock(&seen).push(job.key);
            })
        };
        let workers = Workers::start(2, 64, run).unwrap();
        for key in 0..20 {
            pending.add();
            let job = Job {
                key,
                ident: Ident {
                    method: "/m".into(),
                    model: "".into(),
                    name: "t".into(),
                    dtype: DType::U8,
                },
                sample: vec![0; 16],
                len: 16,
                elem_size: 1,
                reason: TuneReason::New,
            };
            workers.submit(job).unwrap();
        }
        pending.wait_idle();
        let mut keys = lock(&seen).clone();
        keys.sort_unstable();
        assert_eq!(keys, (0..20).collect::<Vec<_>>());
    }
}
