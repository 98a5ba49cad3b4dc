//! Rate limits for the warnings of the HTTP/2 library, whose call sites are not ours to
//! wrap in a [`LogSite`](super::LogSite).
//!
//! h2 warns once for every connection it closes for a protocol violation, so an attacker
//! opening connections in a loop (rapid reset) had it write thousands of lines a
//! second. This layer gives each of h2's warning and error call sites its own token
//! bucket, with the same limits as the sidecar's own sites, and counts the lines it drops
//! under the dependency's name (`site="h2"`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tracing::callsite::Identifier;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::{BURST, LINES_PER_SECOND, SUPPRESSED, SiteLabels, TokenBucket};

/// Targets (crate names) whose warnings are limited.
const LIMITED: [&str; 2] = ["h2", "hyper"];

/// A [`Layer`] that drops a dependency's warnings and errors beyond each call site's rate.
#[derive(Debug, Default)]
pub struct DependencyWarnings {
    buckets: Mutex<HashMap<Identifier, TokenBucket>>,
}

impl DependencyWarnings {
    /// A layer with every site's bucket full.
    pub fn new() -> Self {
        DependencyWarnings::default()
    }

    /// Whether an event of `target` at `level` from `callsite` is logged at `now`.
    fn admit(&self, target: &str, level: Level, callsite: Identifier, now: Instant) -> bool {
        let Some(crate_name) = limited_crate(target) else {
            return true;
        };
        if level > Level::WARN {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let admitted = buckets
            .entry(callsite)
            .or_insert_with(|| TokenBucket::new(LINES_PER_SECOND, BURST))
            .take(now);
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

impl<S: Subscriber> Layer<S> for DependencyWarnings {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        self.admit(
            metadata.target(),
            *metadata.level(),
            metadata.callsite(),
            Instant::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::log_limit::suppressed_total;

    /// Counts the events that reach it.
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn only_the_dependencies_warnings_are_limited() {
        let seen = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(DependencyWarnings::new())
            .with(Count(Arc::clone(&seen)));
        let before = suppressed_total("h2");
        tracing::subscriber::with_default(subscriber, || {
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

        let subscriber = tracing_subscriber::registry()
            .with(DependencyWarnings::new())
            .with(Count(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, || {
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
        let subscriber = tracing_subscriber::registry()
            .with(DependencyWarnings::new())
            .with(Count(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, || {
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
}
