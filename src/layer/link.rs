//! Measuring the link between the sidecars from live calls.
//!
//! The outbound side owns the estimate for its peer. Per call it learns:
//!
//! - for the request, how the inbound saw its bytes arrive (`bloscar-link` trailer,
//!   `rx=<bytes>/<µs>`: the time it waited for them), and whether its own request body
//!   kept the link busy (its [`Clock`]);
//! - for the response, how long it waited here for its bytes (its [`Clock`]), and whether
//!   the inbound's response body kept the link busy (`stall=<µs>/<µs>`: stalled time over the
//!   span of sending).
//!
//! A direction where the sender seldom stalled gives the link's goodput; otherwise the
//! arrival rate is only a lower bound (the sender, not the link, set the pace). The
//! outbound passes its estimate to the inbound in each request (`bloscar-link-rate`
//! header, bytes per second), so the inbound compresses responses for the same link.
//! Apps never see these headers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::clock::{Clock, MIN_SAMPLE_BYTES};
use crate::codec::tune::link::MIN_SAMPLE_SECS;

/// Trailer the inbound adds to a response: how the request arrived, how the response was
/// sent.
pub const LINK_TRAILER: HeaderName = HeaderName::from_static("bloscar-link");
/// Request header with the outbound's estimate of the link, bytes per second.
pub const LINK_RATE_HEADER: HeaderName = HeaderName::from_static("bloscar-link-rate");

/// A sender that stalled for less than this share of its sending span kept the link
/// busy: the arrival rate is the link's.
const BUSY_SHARE: f64 = 0.2;

/// One measurement of the link: bytes over the seconds they took to arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goodput {
    /// Bytes that crossed.
    pub bytes: u64,
    /// Seconds the receiver waited for them (see [`Clock::idle_time`]).
    pub secs: f64,
    /// Whether the link set the pace (else the sender did, and the link is at least as
    /// fast).
    pub link_bound: bool,
}

/// What one call's bodies recorded, shared between its request and response sides.
#[derive(Debug, Default, Clone)]
pub struct CallTiming {
    /// How this side sent its body (outbound: the request; inbound: the response).
    pub sent: Option<Clock>,
    /// How the peer's body arrived here (outbound: the response; inbound: the request).
    pub received: Option<Clock>,
    /// Inbound: wall-clock time spent decompressing the request's Blosc segments.
    pub restored: Duration,
}

/// A call's timing, written by one body and read by the other.
pub type SharedTiming = Arc<Mutex<CallTiming>>;

/// The inbound's trailer: the request's arrival and the response's sending.
pub fn report(timing: &CallTiming) -> Option<HeaderValue> {
    let (received, sent) = (timing.received.as_ref(), timing.sent.as_ref());
    let mut parts = Vec::new();
    if let Some(rx) = received.filter(|rx| rx.bytes() >= MIN_SAMPLE_BYTES) {
        parts.push(format!("rx={}/{}", rx.bytes(), rx.idle_time().as_micros()));
    }
    if let Some(tx) = sent.filter(|tx| tx.bytes() >= MIN_SAMPLE_BYTES) {
        parts.push(format!(
            "stall={}/{}",
            tx.idle_time().as_micros(),
            tx.span().as_micros()
        ));
    }
    if timing.restored > Duration::ZERO {
        parts.push(format!("dec={}", timing.restored.as_micros()));
    }
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join(";")).ok()
}

/// What the inbound reported, read off (and removed from) the response trailers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PeerReport {
    /// The request's bytes and the time the inbound waited for them.
    pub request_arrival: Option<(u64, Duration)>,
    /// The response's stalled time and sending span at the inbound.
    pub response_stall: Option<(Duration, Duration)>,
    /// Wall-clock time the inbound spent decompressing the request.
    pub request_decode: Option<Duration>,
}

/// Takes the inbound's report out of `trailers`; a malformed report counts as none.
pub fn take_report(trailers: &mut HeaderMap) -> PeerReport {
    let mut report = PeerReport::default();
    let Some(value) = trailers.remove(LINK_TRAILER) else {
        return report;
    };
    let Ok(value) = value.to_str() else {
        return report;
    };
    for part in value.split(';') {
        let Some((key, pair)) = part.trim().split_once('=') else {
            continue;
        };
        if key == "dec" {
            if let Ok(micros) = pair.parse::<u64>() {
                report.request_decode = Some(Duration::from_micros(micros));
            }
            continue;
        }
        let Some((a, b)) = pair.split_once('/') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            continue;
        };
        match key {
            "rx" => report.request_arrival = Some((a, Duration::from_micros(b))),
            "stall" => {
                report.response_stall = Some((Duration::from_micros(a), Duration::from_micros(b)));
            }
            _ => {}
        }
    }
    report
}

/// Whether a sender that stalled `stalled` over a sending span of `span` kept the link
/// busy.
fn kept_busy(stalled: Duration, span: Duration) -> bool {
    span > Duration::ZERO && stalled.as_secs_f64() < BUSY_SHARE * span.as_secs_f64()
}

/// A receiver that waited this many times longer than its sender took to hand the bytes
/// over saw them queue on the link: the link set the pace, however often the sender
/// paused (a message that fits the HTTP/2 send buffer leaves the sender at once).
const QUEUED_FACTOR: f64 = 1.5;

/// Whether the bytes waited for over `waited` were queued on the link, the sender
/// having handed them all over within `sent_span`.
fn queued_on_link(waited: Duration, sent_span: Duration) -> bool {
    waited.as_secs_f64() > QUEUED_FACTOR * sent_span.as_secs_f64()
}

/// One measurement of `bytes` the receiver waited `waited` for.
///
/// A wait too short to time (under [`MIN_SAMPLE_SECS`]) still says the link is at least
/// that fast: it counts as a lower bound at that resolution. Dropping it instead would
/// keep, on a fast link, only the transfers that something slowed down (a busy core, a
/// preemption), and the estimate would follow those.
fn goodput(bytes: u64, waited: Duration, link_bound: bool) -> Goodput {
    let secs = waited.as_secs_f64();
    if secs < MIN_SAMPLE_SECS {
        Goodput {
            bytes,
            secs: MIN_SAMPLE_SECS,
            link_bound: false,
        }
    } else {
        Goodput {
            bytes,
            secs,
            link_bound,
        }
    }
}

/// The measurements one call gives the outbound: its request as the inbound saw it
/// arrive, and its response as it arrived here.
pub fn goodputs(timing: &CallTiming, report: &PeerReport) -> Vec<Goodput> {
    let mut out = Vec::with_capacity(2);
    if let Some((bytes, waited)) = report.request_arrival
        && bytes >= MIN_SAMPLE_BYTES as u64
    {
        let link_bound = timing.sent.as_ref().is_some_and(|tx| {
            kept_busy(tx.idle_time(), tx.span()) || queued_on_link(waited, tx.span())
        });
        out.push(goodput(bytes, waited, link_bound));
    }
    if let Some(rx) = timing.received.as_ref()
        && rx.bytes() >= MIN_SAMPLE_BYTES
    {
        let link_bound = report.response_stall.is_some_and(|(stalled, span)| {
            kept_busy(stalled, span) || queued_on_link(rx.idle_time(), span)
        });
        out.push(goodput(rx.bytes() as u64, rx.idle_time(), link_bound));
    }
    out
}

/// The outbound's estimate, for the inbound to compress responses with.
pub fn rate_header(bytes_per_sec: f64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{}", bytes_per_sec.round() as u64)).ok()
}

/// Takes the outbound's estimate out of a request's headers.
pub fn take_rate(headers: &mut HeaderMap) -> Option<f64> {
    let value = headers.remove(LINK_RATE_HEADER)?;
    let rate = value.to_str().ok()?.trim().parse::<u64>().ok()?;
    (rate > 0).then_some(rate as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_through_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert(
            LINK_TRAILER,
            HeaderValue::from_static("rx=1048576/80000;stall=100/9000;dec=2500"),
        );
        let report = take_report(&mut trailers);
        assert_eq!(
            report,
            PeerReport {
                request_decode: Some(Duration::from_micros(2500)),
                request_arrival: Some((1_048_576, Duration::from_micros(80_000))),
                response_stall: Some((Duration::from_micros(100), Duration::from_micros(9_000))),
            }
        );
        assert!(trailers.get(LINK_TRAILER).is_none());
        assert_eq!(trailers.len(), 1);
    }

    #[test]
    fn malformed_reports_are_ignored() {
        for value in ["", "rx", "rx=1", "rx=a/b", "stall=1/", "other=1/2"] {
            let mut trailers = HeaderMap::new();
            trailers.insert(LINK_TRAILER, HeaderValue::from_str(value).unwrap());
            assert_eq!(take_report(&mut trailers), PeerReport::default(), "{value}");
        }
    }

    #[test]
    fn a_request_the_outbound_stalled_on_is_only_a_lower_bound() {
        let report = PeerReport {
            request_decode: None,
            request_arrival: Some((4 << 20, Duration::from_millis(40))),
            response_stall: None,
        };
        let timing = CallTiming::default();
        let samples = goodputs(&timing, &report);
        assert_eq!(samples.len(), 1);
        assert!(!samples[0].link_bound);
        assert!((samples[0].bytes as f64 / samples[0].secs - 104_857_600.0).abs() < 1.0);
    }

    #[test]
    fn waits_too_short_to_time_are_lower_bounds() {
        // A link-bound request of 4 MiB that took 0.5 ms (or no wait at all): the link is
        // at least 4 MiB per 2 ms fast, not unmeasured.
        for waited in [Duration::from_micros(500), Duration::ZERO] {
            let report = PeerReport {
                request_decode: None,
                request_arrival: Some((4 << 20, waited)),
                response_stall: None,
            };
            let mut sent = Clock::default();
            sent.moved(4 << 20);
            let timing = CallTiming {
                sent: Some(sent),
                ..CallTiming::default()
            };
            let samples = goodputs(&timing, &report);
            assert_eq!(
                samples,
                vec![Goodput {
                    bytes: 4 << 20,
                    secs: MIN_SAMPLE_SECS,
                    link_bound: false,
                }]
            );
        }
    }

    #[test]
    fn bytes_that_queued_on_the_link_measure_it_however_the_sender_paused() {
        // 1 MiB handed over in 5 ms by a sender that stalled most of that time, then
        // 80 ms of arrival: the link, not the sender, set the pace.
        let report = PeerReport {
            request_decode: None,
            request_arrival: Some((1 << 20, Duration::from_millis(80))),
            response_stall: None,
        };
        let mut sent = Clock::default();
        sent.moved(1000);
        sent.idle();
        std::thread::sleep(Duration::from_millis(5));
        sent.moved((1 << 20) - 1000);
        let timing = CallTiming {
            sent: Some(sent),
            ..CallTiming::default()
        };
        let samples = goodputs(&timing, &report);
        assert_eq!(samples.len(), 1);
        assert!(samples[0].link_bound);
        // The same arrival from a sender that took as long to hand the bytes over only
        // says the link is at least that fast.
        assert!(!queued_on_link(
            Duration::from_millis(80),
            Duration::from_millis(70)
        ));
    }

    #[test]
    fn small_transfers_are_not_samples() {
        let report = PeerReport {
            request_decode: None,
            request_arrival: Some((1000, Duration::from_millis(1))),
            response_stall: None,
        };
        assert!(goodputs(&CallTiming::default(), &report).is_empty());
    }

    #[test]
    fn rates_round_trip_through_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(LINK_RATE_HEADER, rate_header(12_500_000.4).unwrap());
        assert_eq!(take_rate(&mut headers), Some(12_500_000.0));
        assert!(headers.is_empty());
        headers.insert(LINK_RATE_HEADER, HeaderValue::from_static("0"));
        assert_eq!(take_rate(&mut headers), None);
    }
}
