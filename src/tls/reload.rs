//! A TLS configuration built from files, rebuilt when the files change on disk.
//!
//! Kubernetes updates a mounted Secret by swapping a symlink to a new directory, and
//! cert-manager renews certificates weeks before they expire, so the files change rarely
//! and all at once. Rather than watch them (inotify across symlink swaps needs care, and
//! a crate), the files are read again when a connection is made, at most once per
//! [`CHECK_INTERVAL`]: reading three small files from tmpfs costs microseconds. Their
//! contents are compared, not their times, so that a rewrite within one clock tick is
//! seen too.
//!
//! New contents that do not build (a key written before its certificate, a bad PEM) are
//! refused once, with the reason, and the previous configuration stays in use until the
//! files change again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{TlsError, pem};

/// How often, at most, the files are looked at again.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// One file a configuration is built from, with the variable that names it.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) variable: &'static str,
    pub(super) path: PathBuf,
}

/// Builds a configuration from the contents of its files, in [`Source`] order.
pub(super) type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync>;

/// What a look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// Not looked at (too soon), or unchanged.
    Unchanged,
    /// Changed, and the new configuration is in use from now on.
    Reloaded,
    /// Changed, but the new files do not build: the previous configuration stays.
    Refused(TlsError),
}

/// A configuration `T` built from files, rebuilt when their contents change.
pub(super) struct Reloading<T> {
    sources: Vec<Source>,
    build: Build<T>,
    interval: Duration,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    /// The fingerprint of the files last looked at (built or refused).
    seen: u64,
    checked: Instant,
}

impl<T> Reloading<T> {
    /// Reads and builds the configuration now: an error here is a configuration error.
    pub(super) fn load(sources: Vec<Source>, build: Build<T>) -> Result<Reloading<T>, TlsError> {
        Reloading::with_interval(sources, build, CHECK_INTERVAL)
    }

    /// [`Reloading::load`] with another check interval.
    pub(super) fn with_interval(
        sources: Vec<Source>,
        build: Build<T>,
        interval: Duration,
    ) -> Result<Reloading<T>, TlsError> {
        let contents = read_all(&sources);
        let seen = fingerprint(&contents);
        let current = Arc::new(build(&collect(contents)?)?);
        Ok(Reloading {
            sources,
            build,
            interval,
            state: Mutex::new(State {
                current,
                seen,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration to use for a new connection, after looking at the files again
    /// if the check interval has passed.
    pub(super) fn current(&self) -> (Arc<T>, Reload) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(state.checked) < self.interval {
            return (Arc::clone(&state.current), Reload::Unchanged);
        }
        state.checked = now;
        let contents = read_all(&self.sources);
        let seen = fingerprint(&contents);
        if seen == state.seen {
            return (Arc::clone(&state.current), Reload::Unchanged);
        }
        state.seen = seen;
        let outcome = match collect(contents).and_then(|contents| (self.build)(&contents)) {
            Ok(config) => {
                state.current = Arc::new(config);
                Reload::Reloaded
            }
            Err(e) => Reload::Refused(e),
        };
        (Arc::clone(&state.current), outcome)
    }

    /// The files, for log lines.
    pub(super) fn paths(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| s.path.display().to_string())
            .collect()
    }
}

fn read_all(sources: &[Source]) -> Vec<Result<Vec<u8>, TlsError>> {
    sources
        .iter()
        .map(|s| pem::read(s.variable, &s.path))
        .collect()
}

/// A hash of the contents, or of the errors where a file could not be read: each state
/// of the files is built (and logged) once. Not a security measure: whoever can write the
/// files decides the configuration anyway.
fn fingerprint(contents: &[Result<Vec<u8>, TlsError>]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for content in contents {
        match content {
            Ok(bytes) => (0u8, bytes).hash(&mut hasher),
            Err(e) => (1u8, e.to_string()).hash(&mut hasher),
        }
    }
    hasher.finish()
}

fn collect(contents: Vec<Result<Vec<u8>, TlsError>>) -> Result<Vec<Vec<u8>>, TlsError> {
    contents.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_number() -> Build<u32> {
        Box::new(|contents: &[Vec<u8>]| {
            std::str::from_utf8(&contents[0])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| TlsError::content("BLOSCAR_X", "n".as_ref(), "not a number"))
        })
    }

    #[test]
    fn changes_are_taken_refused_once_and_taken_again() {
        let dir = std::env::temp_dir().join(format!("bloscar-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n");
        std::fs::write(&path, "1").unwrap();
        let source = Source {
            variable: "BLOSCAR_X",
            path: path.clone(),
        };
        let reloading =
            Reloading::with_interval(vec![source], parse_number(), Duration::ZERO).unwrap();
        let (n, outcome) = reloading.current();
        assert_eq!((*n, matches!(outcome, Reload::Unchanged)), (1, true));

        std::fs::write(&path, "2").unwrap();
        let (n, outcome) = reloading.current();
        assert_eq!((*n, matches!(outcome, Reload::Reloaded)), (2, true));

        std::fs::write(&path, "bad").unwrap();
        let (n, outcome) = reloading.current();
        assert_eq!(*n, 2);
        assert!(
            matches!(&outcome, Reload::Refused(e) if e.to_string().contains("not a number")),
            "{outcome:?}"
        );
        // The same bad contents are not refused (or logged) again.
        assert!(matches!(reloading.current().1, Reload::Unchanged));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            reloading.current().1,
            Reload::Refused(TlsError::Read { .. })
        ));
        assert_eq!(*reloading.current().0, 2);

        std::fs::write(&path, "3").unwrap();
        let (n, outcome) = reloading.current();
        assert_eq!((*n, matches!(outcome, Reload::Reloaded)), (3, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_not_looked_at_within_the_interval() {
        let dir = std::env::temp_dir().join(format!("bloscar-interval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n");
        std::fs::write(&path, "1").unwrap();
        let source = Source {
            variable: "BLOSCAR_X",
            path: path.clone(),
        };
        let reloading =
            Reloading::with_interval(vec![source], parse_number(), Duration::from_secs(3600))
                .unwrap();
        std::fs::write(&path, "2").unwrap();
        assert_eq!(*reloading.current().0, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_does_not_build_at_start_is_an_error() {
        let source = Source {
            variable: "BLOSCAR_X",
            path: "/nonexistent/n".into(),
        };
        let e = Reloading::load(vec![source], parse_number()).err().unwrap();
        assert_eq!(e.variable(), "BLOSCAR_X");
    }
}
