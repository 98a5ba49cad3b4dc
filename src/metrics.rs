//! Prometheus metrics of the sidecar (prometheus-client).
//!
//! `Metrics::new()` registers every family; `Metrics::render()` gives the text exposition
//! format served by the admin listener. The proxy and the layer record through the methods
//! below; one `Metrics` is shared (`Arc`) by every listener of a process.

use std::collections::HashSet;
use std::fmt::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which way a message travels between the apps: the locator's direction, as a label.
pub use crate::locate::Direction;

/// What the sidecar did to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Written as a bloscar container.
    Encoded,
    /// Read from a bloscar container (or gzip/deflate/zstd) back into identity.
    Decoded,
    /// Forwarded as identity, nothing worth compressing.
    Passed,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(match self {
            Direction::Request => "request",
            Direction::Response => "response",
        })
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(match self {
            Outcome::Encoded => "encoded",
            Outcome::Decoded => "decoded",
            Outcome::Passed => "passed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    direction: Direction,
    outcome: Outcome,
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    /// The proxy role the listener serves: `inbound` or `outbound`.
    listener: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TimeoutLabels {
    listener: &'static str,
    timeout: ConnectionTimeout,
}

/// Why a listener closed a connection on its own initiative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionTimeout {
    /// The client did not send its HTTP/2 preface and SETTINGS (or its first bytes of
    /// HTTP/1) in time.
    Handshake,
    /// No call was open on the connection for the idle timeout.
    Idle,
}

impl EncodeLabelValue for ConnectionTimeout {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(match self {
            ConnectionTimeout::Handshake => "handshake",
            ConnectionTimeout::Idle => "idle",
        })
    }
}

/// Distinct method labels kept before further methods are counted as `other`: method
/// paths come from clients and must not grow the registry without bound.
const MAX_METHOD_LABELS: usize = 256;

type HistogramFamily = Family<DirectionLabels, Histogram, fn() -> Histogram>;

/// The sidecar's metric families.
pub struct Metrics {
    registry: Registry,
    messages: Family<MessageLabels, Counter>,
    bytes_before: Family<MessageLabels, Counter>,
    bytes_after: Family<MessageLabels, Counter>,
    ratio: HistogramFamily,
    seconds: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    streams: Gauge<i64, AtomicI64>,
    link_rate: Gauge<f64, AtomicU64>,
    link_samples: Family<SampleLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
    connections_refused: Family<ListenerLabels, Counter>,
    connections_timed_out: Family<TimeoutLabels, Counter>,
    connections_reset_flood: Family<ListenerLabels, Counter>,
    methods: Mutex<HashSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SampleLabels {
    /// `link` when the link set the pace, `at_least` when the sender may have.
    kind: &'static str,
}

fn ratio_histogram() -> Histogram {
    Histogram::new([
        1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0,
    ])
}

fn seconds_histogram() -> Histogram {
    // 10 µs to ~5 s.
    Histogram::new(exponential_buckets(1e-5, 3.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric family under the `bloscar` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bloscar");
        let messages = Family::<MessageLabels, Counter>::default();
        let bytes_before = Family::<MessageLabels, Counter>::default();
        let bytes_after = Family::<MessageLabels, Counter>::default();
        let ratio: HistogramFamily = Family::new_with_constructor(ratio_histogram);
        let seconds: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let errors = Family::<ErrorLabels, Counter>::default();
        let streams = Gauge::<i64, AtomicI64>::default();
        let link_rate = Gauge::<f64, AtomicU64>::default();
        let link_samples = Family::<SampleLabels, Counter>::default();
        let connections_open = Family::<ListenerLabels, Gauge<i64, AtomicI64>>::default();
        let connections_refused = Family::<ListenerLabels, Counter>::default();
        let connections_timed_out = Family::<TimeoutLabels, Counter>::default();
        let connections_reset_flood = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "link_rate_bytes_per_second",
            "Outbound: the measured goodput of the link to the peer sidecar (0 until measured)",
            link_rate.clone(),
        );
        registry.register(
            "link_samples",
            "Outbound: measurements of the link taken from calls, by what they say of it",
            link_samples.clone(),
        );
        registry.register(
            "messages",
            "gRPC messages by direction, method and what was done to them",
            messages.clone(),
        );
        registry.register(
            "message_bytes_before",
            "Message bytes as the sending app wrote them (identity), before encoding or after decoding",
            bytes_before.clone(),
        );
        registry.register(
            "message_bytes_after",
            "Message bytes as they travel between the sidecars",
            bytes_after.clone(),
        );
        registry.register(
            "compression_ratio",
            "Identity size over encoded size of each encoded message",
            ratio.clone(),
        );
        registry.register(
            "transform_seconds",
            "Time spent encoding or decoding one message",
            seconds.clone(),
        );
        registry.register(
            "errors",
            "Failed gRPC calls by kind (the gRPC status they ended with)",
            errors.clone(),
        );
        registry.register(
            "streams_in_flight",
            "gRPC calls currently proxied",
            streams.clone(),
        );
        crate::log_limit::register(&mut registry);
        registry.register(
            "connections_open",
            "Client connections open on each proxy listener",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections a proxy listener closed at once because it was at its connection limit",
            connections_refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections a proxy listener closed because the client was too slow to start \
             (handshake) or had no call open for the idle timeout (idle)",
            connections_timed_out.clone(),
        );
        registry.register(
            "connections_reset_flood",
            "Connections a proxy listener closed because most of their calls were cancelled \
             by the client before their answer (premature resets)",
            connections_reset_flood.clone(),
        );
        Metrics {
            registry,
            messages,
            bytes_before,
            bytes_after,
            ratio,
            seconds,
            errors,
            streams,
            link_rate,
            link_samples,
            connections_open,
            connections_refused,
            connections_timed_out,
            connections_reset_flood,
            methods: Mutex::new(HashSet::new()),
        }
    }

    /// Adds metrics that are read at scrape time, such as the auto-tuner's
    /// ([`Tuner::collector`](crate::codec::tune::Tuner::collector)); their names get the
    /// `bloscar_` prefix too.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one message: `identity_len` is its plain size, `wire_len` its size between
    /// the sidecars; `elapsed` the encode or decode time (zero when passed through).
    pub fn record_message(
        &self,
        direction: Direction,
        outcome: Outcome,
        method: &str,
        identity_len: usize,
        wire_len: usize,
        elapsed: Duration,
    ) {
        let labels = MessageLabels {
            direction,
            outcome,
            method: self.method_label(method),
        };
        self.messages.get_or_create(&labels).inc();
        self.bytes_before
            .get_or_create(&labels)
            .inc_by(identity_len as u64);
        self.bytes_after
            .get_or_create(&labels)
            .inc_by(wire_len as u64);
        if outcome != Outcome::Passed {
            let d = DirectionLabels { direction };
            if wire_len > 0 {
                self.ratio
                    .get_or_create(&d)
                    .observe(identity_len as f64 / wire_len as f64);
            }
            self.seconds
                .get_or_create(&d)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a failure of the given kind: the label of the gRPC status a call ended
    /// with (`data_loss`, `unavailable`, ...), or `encode_failed` for a message that
    /// went as identity because it could not be encoded.
    pub fn record_error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Records a measurement of the link (`link_bound`: the link set the pace) and the
    /// estimate after it, bytes per second.
    pub fn record_link(&self, link_bound: bool, estimate: Option<f64>) {
        let kind = if link_bound { "link" } else { "at_least" };
        self.link_samples
            .get_or_create(&SampleLabels { kind })
            .inc();
        self.link_rate.set(estimate.unwrap_or(0.0));
    }

    /// Counts a call in flight until the returned guard is dropped.
    pub fn stream_started(&self) -> StreamGuard {
        self.streams.inc();
        StreamGuard {
            gauge: self.streams.clone(),
        }
    }

    /// Creates the connection series of a proxy listener (`inbound` or `outbound`), so
    /// that they read 0 before anything happened rather than being absent.
    pub fn listener_started(&self, listener: &'static str) {
        let labels = ListenerLabels { listener };
        let _ = self.connections_open.get_or_create(&labels);
        let _ = self.connections_refused.get_or_create(&labels);
        for timeout in [ConnectionTimeout::Handshake, ConnectionTimeout::Idle] {
            let _ = self
                .connections_timed_out
                .get_or_create(&TimeoutLabels { listener, timeout });
        }
    }

    /// Counts a connection open on `listener` until the returned guard is dropped.
    pub fn connection_opened(&self, listener: &'static str) -> ConnectionGuard {
        let gauge = self
            .connections_open
            .get_or_create(&ListenerLabels { listener })
            .clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Counts a connection that `listener` closed at once, being at its limit.
    pub fn record_connection_refused(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// Counts a connection that `listener` closed because of `timeout`.
    pub fn record_connection_timeout(&self, listener: &'static str, timeout: ConnectionTimeout) {
        self.connections_timed_out
            .get_or_create(&TimeoutLabels { listener, timeout })
            .inc();
    }

    /// Counts a connection that `listener` closed for its premature resets.
    pub fn record_connection_reset_flood(&self, listener: &'static str) {
        self.connections_reset_flood
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    fn method_label(&self, method: &str) -> String {
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        if methods.contains(method) {
            return method.to_owned();
        }
        if methods.len() < MAX_METHOD_LABELS {
            methods.insert(method.to_owned());
            return method.to_owned();
        }
        "other".to_owned()
    }
}

/// Keeps one call counted in `streams_in_flight`.
#[derive(Debug)]
pub struct StreamGuard {
    gauge: Gauge<i64, AtomicI64>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Keeps one connection counted in `connections_open`.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge<i64, AtomicI64>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_recorded_values() {
        let metrics = Metrics::new();
        metrics.record_message(
            Direction::Request,
            Outcome::Encoded,
            "/inference.GRPCInferenceService/ModelInfer",
            4000,
            1000,
            Duration::from_micros(50),
        );
        metrics.record_error("data_loss");
        let guard = metrics.stream_started();
        let text = metrics.render();
        assert!(text.contains(
            "bloscar_messages_total{direction=\"request\",outcome=\"encoded\",method=\"/inference.GRPCInferenceService/ModelInfer\"} 1"
        ), "{text}");
        assert!(text.contains("bloscar_message_bytes_before_total{direction=\"request\",outcome=\"encoded\",method=\"/inference.GRPCInferenceService/ModelInfer\"} 4000"));
        assert!(text.contains("bloscar_compression_ratio_sum{direction=\"request\"} 4.0"));
        assert!(text.contains("bloscar_errors_total{kind=\"data_loss\"} 1"));
        assert!(text.contains("bloscar_streams_in_flight 1"));
        drop(guard);
        assert!(metrics.render().contains("bloscar_streams_in_flight 0"));
    }

    #[test]
    fn connection_series_per_listener() {
        let metrics = Metrics::new();
        metrics.listener_started("inbound");
        let text = metrics.render();
        assert!(
            text.contains("bloscar_connections_open{listener=\"inbound\"} 0"),
            "{text}"
        );
        assert!(text.contains("bloscar_connections_refused_total{listener=\"inbound\"} 0"));
        let first = metrics.connection_opened("inbound");
        let _second = metrics.connection_opened("inbound");
        metrics.record_connection_refused("inbound");
        metrics.record_connection_timeout("outbound", ConnectionTimeout::Idle);
        let text = metrics.render();
        assert!(text.contains("bloscar_connections_open{listener=\"inbound\"} 2"));
        assert!(text.contains("bloscar_connections_refused_total{listener=\"inbound\"} 1"));
        assert!(text.contains(
            "bloscar_connections_timed_out_total{listener=\"outbound\",timeout=\"idle\"} 1"
        ));
        drop(first);
        assert!(
            metrics
                .render()
                .contains("bloscar_connections_open{listener=\"inbound\"} 1")
        );
    }

    #[test]
    fn method_labels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_METHOD_LABELS + 10 {
            metrics.record_message(
                Direction::Response,
                Outcome::Passed,
                &format!("/svc/M{i}"),
                1,
                1,
                Duration::ZERO,
            );
        }
        assert!(metrics.render().contains("method=\"other\"} 10"));
    }
}
