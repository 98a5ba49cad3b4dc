//! Timing the bytes of a stream, for measuring the link between the sidecars.
//!
//! The receiving side knows when bytes arrived; only the sending side knows whether it
//! kept the link busy. A [`SendClock`] counts the time a sending body had nothing ready
//! when the connection asked for more (its stalls: compression still running, or the app
//! not sending); a [`RecvClock`] counts the time a receiving body waited for the link
//! (it asked for bytes and none had arrived). Bytes over that wait are the link's
//! goodput when the sender seldom stalled, and at least a lower bound on it otherwise.
//!
//! The receiver counts its waits, not the span of the arrivals: while the receiving app
//! does not read, flow control holds the sender back and the span grows, but the link is
//! not what is slow. A span would measure the app (or the decompression the body waits
//! for) as the link, and then compression would look worth it where it cannot help.

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

/// Times the arrival of a stream's bytes: how long the receiver waited for them.
#[derive(Debug, Clone, Default)]
pub struct RecvClock {
    first: Option<Instant>,
    last: Option<Instant>,
    waiting_since: Option<Instant>,
    waited: Duration,
    bytes: usize,
}

impl RecvClock {
    /// `len` bytes arrived now.
    pub fn arrived(&mut self, len: usize) {
        let now = Instant::now();
        if let Some(since) = self.waiting_since.take() {
            // Waiting for the first byte is the peer's and the app's latency, not the
            // link's rate.
            if self.first.is_some() {
                self.waited += now.saturating_duration_since(since);
            }
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.bytes += len;
    }

    /// The body asked for bytes and none had arrived.
    pub fn waiting(&mut self) {
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// Time spent waiting for bytes between the first and the last arrival: the time
    /// the link took to deliver them, without the time nobody asked for them.
    pub fn waited(&self) -> Duration {
        self.waited
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
    fn only_waits_after_the_first_byte_count() {
        let mut clock = RecvClock::default();
        clock.waiting();
        std::thread::sleep(Duration::from_millis(2));
        clock.arrived(10);
        assert_eq!(clock.waited(), Duration::ZERO);
        clock.waiting();
        std::thread::sleep(Duration::from_millis(2));
        clock.arrived(10);
        let waited = clock.waited();
        assert!(waited >= Duration::from_millis(2));
        // Time the receiver spent not asking (its app not reading) is not the link's.
        std::thread::sleep(Duration::from_millis(5));
        clock.arrived(10);
        assert_eq!(clock.waited(), waited);
        assert!(clock.span() >= waited + Duration::from_millis(5));
        assert_eq!(clock.bytes(), 30);
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
