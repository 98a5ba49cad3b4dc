//! Timing the bytes of a stream, for measuring the link between the sidecars.
//!
//! The receiving side knows when bytes arrived; only the sending side knows whether it
//! kept the link busy. A [`Clock`] on a sending body counts the time it had nothing ready
//! when the connection asked for more (its stalls: compression still running, or the app
//! not sending); on a receiving body, the time it waited for the link (it asked for
//! bytes and none had arrived). Bytes over that wait are the link's
//! goodput when the sender seldom stalled, and at least a lower bound on it otherwise.
//!
//! The receiver counts its waits, not the span of the arrivals: while the receiving app
//! does not read, flow control holds the sender back and the span grows, but the link is
//! not what is slow. A span would measure the app (or the decompression the body waits
//! for) as the link, and then compression would look worth it where it cannot help.

use std::time::{Duration, Instant};

/// Messages smaller than this say nothing about the link: their time is mostly latency.
pub const MIN_SAMPLE_BYTES: usize = 256 * 1024;

/// Times the bytes a body moves: how long it went without any while they were owed.
///
/// A sending body's idle time is its stalls (it had nothing ready when the connection
/// asked); a receiving body's is its waits (it asked and nothing had arrived). Either
/// way, time before the first byte is the app's and the peer's latency, not the link's,
/// and does not count.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    first: Option<Instant>,
    last: Option<Instant>,
    idle_since: Option<Instant>,
    idle: Duration,
    bytes: usize,
}

impl Clock {
    /// The body moved `len` bytes now (handed them over, or received them).
    pub fn moved(&mut self, len: usize) {
        let now = Instant::now();
        if let Some(since) = self.idle_since.take()
            && self.first.is_some()
        {
            self.idle += now.saturating_duration_since(since);
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.bytes += len;
    }

    /// The body had no bytes to move when asked.
    pub fn idle(&mut self) {
        self.idle_since.get_or_insert_with(Instant::now);
    }

    /// Time without bytes between the first and the last byte moved: a sender's stalls,
    /// or the time a receiver waited for the link to deliver.
    pub fn idle_time(&self) -> Duration {
        self.idle
    }

    /// Bytes moved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Time from the first to the last byte moved.
    pub fn span(&self) -> Duration {
        span(self.first, self.last)
    }
}

fn span(first: Option<Instant>, last: Option<Instant>) -> Duration {
    match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_before_the_first_byte_do_not_count() {
        let mut clock = Clock::default();
        clock.idle();
        std::thread::sleep(Duration::from_millis(2));
        clock.moved(10);
        assert_eq!(clock.idle_time(), Duration::ZERO);
        clock.idle();
        std::thread::sleep(Duration::from_millis(2));
        clock.moved(10);
        assert!(clock.idle_time() >= Duration::from_millis(2));
        assert_eq!(clock.bytes(), 20);
        assert!(clock.span() >= clock.idle_time());
    }

    #[test]
    fn only_waits_after_the_first_byte_count() {
        let mut clock = Clock::default();
        clock.idle();
        std::thread::sleep(Duration::from_millis(2));
        clock.moved(10);
        assert_eq!(clock.idle_time(), Duration::ZERO);
        clock.idle();
        std::thread::sleep(Duration::from_millis(2));
        clock.moved(10);
        let waited = clock.idle_time();
        assert!(waited >= Duration::from_millis(2));
        // Time the receiver spent not asking (its app not reading) is not the link's.
        std::thread::sleep(Duration::from_millis(5));
        clock.moved(10);
        assert_eq!(clock.idle_time(), waited);
        assert!(clock.span() >= waited + Duration::from_millis(5));
        assert_eq!(clock.bytes(), 30);
    }

    #[test]
    fn arrivals_span_first_to_last() {
        let mut clock = Clock::default();
        assert_eq!(clock.span(), Duration::ZERO);
        clock.moved(5);
        clock.moved(7);
        assert_eq!(clock.bytes(), 12);
    }
}
