//! The clock trial compressions are timed with.

use std::time::{Duration, Instant};

use cpu_time::ThreadTime;

/// Measures the calling thread's CPU time, so that other work on a busy machine does not
/// count against a setting; wall time where the platform has no thread clock.
#[derive(Debug, Clone, Copy)]
pub enum Stopwatch {
    /// CPU time of this thread.
    Cpu(ThreadTime),
    /// Wall-clock time.
    Wall(Instant),
}

impl Stopwatch {
    /// Starts measuring.
    pub fn start() -> Self {
        ThreadTime::try_now().map_or_else(|_| Stopwatch::Wall(Instant::now()), Stopwatch::Cpu)
    }

    /// Time since [`Stopwatch::start`].
    pub fn elapsed(&self) -> Duration {
        match self {
            Stopwatch::Cpu(t) => t.try_elapsed().unwrap_or_default(),
            Stopwatch::Wall(t) => t.elapsed(),
        }
    }
}
