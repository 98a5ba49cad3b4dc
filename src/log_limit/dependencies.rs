//! Rate limits for the warnings of the HTTP/2 library, whose call sites are not ours to
//! wrap in a [`LogSite`](super::LogSite).
//!
//! h2 warns once for every connection it closes for a protocol violation, so an attacker
//! opening connections in a loop (rapid reset) had it write thousands of lines a
//! second. This layer gives each of h2's warning and error call sites its own token
//! bucket, with the same limits as the sidecar's own sites, and counts the lines it drops
//! under the dependency's name (`site="h2"`).
//!
//! The limit sits in the log's writer, where only lines the log level lets through
//! arrive. A layer of its own took an interest in every call site, so that each of h2's
//! and hyper's trace events and spans, disabled or not, went through the subscriber:
//! a third of the sidecar's CPU time on small calls.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::Instant;

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;

use super::{BURST, LINES_PER_SECOND, SUPPRESSED, SiteLabels, TokenBucket};

/// Targets (crate names) whose warnings are limited.
const LIMITED: [&str; 2] = ["h2", "hyper"];

/// A log writer (`W`) that drops a dependency's warnings and errors beyond each call
/// site's rate, and writes every other line.
#[derive(Debug)]
pub struct DependencyWarnings<W> {
    inner: W,
    buckets: Mutex<HashMap<Identifier, TokenBucket>>,
}

impl<W> DependencyWarnings<W> {
    /// Lines go to `inner`, with every site's bucket full.
    pub fn new(inner: W) -> Self {
        DependencyWarnings {
            inner,
            buckets: Mutex::default(),
        }
    }

    /// Whether a line of `target` at `level` from `callsite` is written now.
    fn admit(&self, target: &str, level: Level, callsite: Identifier) -> bool {
        if level > Level::WARN {
            return true;
        }
        let Some(crate_name) = limited_crate(target) else {
            return true;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let admitted = buckets
            .entry(callsite)
            .or_insert_with(|| TokenBucket::new(LINES_PER_SECOND, BURST))
            .take(Instant::now());
        drop(buckets);
        if !admitted {
            SUPPRESSED
                .get_or_create(&SiteLabels { site: crate_name })
                .inc();
        }
        admitted
    }
}

/// The limited crate that `target` (a module path) belongs to.
fn limited_crate(target: &str) -> Option<&'static str> {
    let crate_name = target.split("::").next().unwrap_or(target);
    LIMITED.into_iter().find(|limited| *limited == crate_name)
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for DependencyWarnings<W> {
    type Writer = EitherWriter<W::Writer, io::Sink>;

    fn make_writer(&'a self) -> Self::Writer {
        EitherWriter::A(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        if self.admit(meta.target(), *meta.level(), meta.callsite()) {
            EitherWriter::A(self.inner.make_writer_for(meta))
        } else {
            EitherWriter::B(io::sink())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::log_limit::suppressed_total;

    /// A subscriber that logs through the limit into a count of written lines.
    fn counting(seen: &Arc<AtomicUsize>) -> impl tracing::Subscriber + Send + Sync {
        let seen = Arc::clone(seen);
        let lines = move || Counter(Arc::clone(&seen));
        tracing_subscriber::fmt()
            .with_max_level(Level::INFO)
            .with_writer(DependencyWarnings::new(lines))
            .finish()
    }

    /// Counts the lines written to it (the log writes each line at once).
    struct Counter(Arc<AtomicUsize>);

    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_the_dependencies_warnings_are_limited() {
        let seen = Arc::new(AtomicUsize::new(0));
        let before = suppressed_total("h2");
        tracing::subscriber::with_default(counting(&seen), || {
            for _ in 0..100 {
                tracing::warn!(target: "h2::proto::streams", "connection error");
            }
        });
        let limited = seen.swap(0, Ordering::Relaxed);
        // The burst, and perhaps a token refilled while the loop ran.
        assert!(
            (BURST as usize..=BURST as usize + 1).contains(&limited),
            "{limited}"
        );
        assert_eq!(suppressed_total("h2") - before, 100 - limited as u64);

        tracing::subscriber::with_default(counting(&seen), || {
            for _ in 0..100 {
                tracing::warn!(target: "bloscar::proxy", "the sidecar's own line");
                tracing::info!(target: "h2::codec", "not a warning");
                tracing::warn!(target: "h2o", "another crate");
            }
        });
        assert_eq!(seen.load(Ordering::Relaxed), 300);
    }

    #[test]
    fn each_call_site_has_its_own_bucket() {
        let seen = Arc::new(AtomicUsize::new(0));
        tracing::subscriber::with_default(counting(&seen), || {
            for _ in 0..50 {
                tracing::warn!(target: "hyper::proto", "one site");
            }
            for _ in 0..50 {
                tracing::error!(target: "hyper::proto", "another site");
            }
        });
        let seen = seen.load(Ordering::Relaxed);
        assert!(
            (2 * BURST as usize..=2 * BURST as usize + 2).contains(&seen),
            "{seen}"
        );
    }

    /// Lines below the log level never reach the limit: they cost nothing and are not
    /// counted as dropped.
    #[test]
    fn lines_below_the_level_are_not_counted() {
        let seen = Arc::new(AtomicUsize::new(0));
        let before = suppressed_total("hyper");
        tracing::subscriber::with_default(counting(&seen), || {
            for _ in 0..100 {
                tracing::debug!(target: "hyper::proto", "below the level");
            }
        });
        assert_eq!(seen.load(Ordering::Relaxed), 0);
        assert_eq!(suppressed_total("hyper"), before);
    }
}
