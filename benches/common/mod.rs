//! What the CPU-timed benchmarks share: criterion timing on the thread's CPU time, so that
//! other load on the machine barely moves the figures, and one set of criterion settings.

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::{Bencher, Criterion};

/// Runs `f` as criterion asks, timing the thread's CPU time rather than wall time.
pub fn cpu_iter<O>(b: &mut Bencher<'_>, mut f: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let start = ThreadTime::now();
        for _ in 0..iters {
            black_box(f());
        }
        start.elapsed()
    })
}

/// 30 samples after half a second of warm-up, two seconds of measurement per benchmark.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}
