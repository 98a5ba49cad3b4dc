//! Timing the bytes of a stream, for measuring the link between the sidecars.
//!
//! The receiving side knows when bytes arrived; only the sending side knows whether it
//! kept the link busy. A [`SendClock`] counts the time a sending body had nothing ready
//! when the connection asked for more (its stalls: compression still running, or the app
//! not sending); a [`RecvClock`] spans the arrival of the bytes. Bytes over the arrival
//! span are the link's goodput when the sender seldom stalled, and at least a lower
//! bound on it otherwise.

use std::time::{Duration, Instant};

/// Messages smaller than this say nothing about the link: their time is mostly latency.
pub const MIN_SAMPLE_BYTES: usize = 256 * 1024;

/// Times a sending body: how long it stalled while bytes were owed.
#[derive(Debug, Clone, Default)]
pub struct SendClock {
    first: Option<Instant>,
    last: Option<Instant>,
    stalled_since: Option<Instant>,
    stalled: Duration,
    bytes: usize,
}

impl SendClock {
    /// The body handed `len` bytes to the connection.
    pub fn sent(&mut self, len: usize) {
        let now = Instant::now();
        if let Some(since) = self.stalled_since.take() {
            // Stalls count only once sending has begun: waiting for the first byte is
            // the app's and the upstream's latency, not the link's.
            if self.first.is_some() {
                self.stalled += now.saturating_duration_since(since);
            }
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.bytes += len;
    }

    /// The body had nothing to send when asked.
    pub fn stall(&mut self) {
        self.stalled_since.get_or_insert_with(Instant::now);
    }

    /// Time spent stalled between the first and the last byte sent.
    pub fn stalled(&self) -> Duration {
        self.stalled
    }

    /// Bytes sent.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Time from the first to the last byte sent.
    pub fn span(&self) -> Duration {
        span(self.first, self.last)
    }
}

/// Times the arrival of a stream's bytes.
#[derive(Debug, Clone, Default)]
pub struct RecvClock {
    first: Option<Instant>,
    last: Option<Instant>,
    bytes: usize,
}

impl RecvClock {
    /// `len` bytes arrived now.
    pub fn arrived(&mut self, len: usize) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.bytes += len;
    }

    /// Bytes that arrived.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Time from the first to the last arrival.
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
        let mut clock = SendClock::default();
        clock.stall();
        std::thread::sleep(Duration::from_millis(2));
        clock.sent(10);
        assert_eq!(clock.stalled(), Duration::ZERO);
        clock.stall();
        std::thread::sleep(Duration::from_millis(2));
        clock.sent(10);
        assert!(clock.stalled() >= Duration::from_millis(2));
        assert_eq!(clock.bytes(), 20);
        assert!(clock.span() >= clock.stalled());
    }

    #[test]
    fn arrivals_span_first_to_last() {
        let mut clock = RecvClock::default();
        assert_eq!(clock.span(), Duration::ZERO);
        clock.arrived(5);
        clock.arrived(7);
        assert_eq!(clock.bytes(), 12);
    }
}
