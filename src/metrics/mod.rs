//! Prometheus metrics of the sidecar (prometheus-client).
//!
//! `Metrics::new()` registers every family; `Metrics::render()` gives the OpenMetrics text
//! served by the admin listener ([`exposition`] turns it into the text format 0.0.4 for
//! scrapers that do not ask for OpenMetrics). The proxy and the layer record through the methods
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
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub mod exposition;
pub mod process;
mod tls;

pub use tls::TlsFailure;

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
    model: String,
}

/// The histograms' labels: per model (bounded like every model label), not per method,
/// to keep the bucket series few.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransformLabels {
    direction: Direction,
    outcome: Outcome,
    model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    method: String,
    model: String,
    /// The gRPC status the call ended with, as [`Code::label`](crate::grpc::status::Code::label).
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    rust_version: &'static str,
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
pub const MAX_METHOD_LABELS: usize = 256;

/// Distinct model labels kept before further models are counted as `other`: model names
/// come from request messages, so they are bounded like methods.
pub const MAX_MODEL_LABELS: usize = 64;

type HistogramFamily = Family<TransformLabels, Histogram, fn() -> Histogram>;

/// The sidecar's metric families.
pub struct Metrics {
    registry: Registry,
    messages: Family<MessageLabels, Counter>,
    identity_bytes: Family<MessageLabels, Counter>,
    wire_bytes: Family<MessageLabels, Counter>,
    factor: HistogramFamily,
    seconds: HistogramFamily,
    calls: Family<CallLabels, Counter>,
    streams: Gauge<i64, AtomicI64>,
    link_rate: Gauge<f64, AtomicU64>,
    link_samples: Family<SampleLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
    connections_refused: Family<ListenerLabels, Counter>,
    connections_timed_out: Family<TimeoutLabels, Counter>,
    connections_reset_flood: Family<ListenerLabels, Counter>,
    tls: tls::TlsMetrics,
    methods: Bounded,
    models: Bounded,
}

/// A label set bounded to `cap` distinct values; later values read `other`.
struct Bounded {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl Bounded {
    fn new(cap: usize) -> Bounded {
        Bounded {
            cap,
            seen: Mutex::new(HashSet::new()),
        }
    }

    fn label(&self, value: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        "other".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SampleLabels {
    /// `link` when the link set the pace, `at_least` when the sender may have.
    kind: &'static str,
}

fn factor_histogram() -> Histogram {
    Histogram::new([
        1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0,
    ])
}

fn seconds_histogram() -> Histogram {
    // 10 µs to 5 s, written out so that the `le` labels read as written (products of
    // floats would show as 0.000030000000000000005).
    Histogram::new([
        0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 5.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric family under the `bloscar` prefix.
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("bloscar");
        let messages = Family::<MessageLabels, Counter>::default();
        let identity_bytes = Family::<MessageLabels, Counter>::default();
        let wire_bytes = Family::<MessageLabels, Counter>::default();
        let factor: HistogramFamily = Family::new_with_constructor(factor_histogram);
        let seconds: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let calls = Family::<CallLabels, Counter>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                rust_version: env!("CARGO_PKG_RUST_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels name the bloscar version and the oldest Rust version it builds with",
            build,
        );
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
            "gRPC messages by direction, method, model and what was done to them (encoded, decoded or passed as they were)",
            messages.clone(),
        );
        registry.register(
            "message_identity_bytes",
            "Message bytes as the sending app wrote them (identity), before encoding or after decoding",
            identity_bytes.clone(),
        );
        registry.register(
            "message_wire_bytes",
            "Message bytes as they travel between the sidecars",
            wire_bytes.clone(),
        );
        registry.register(
            "compression_factor",
            "Identity size over wire size of each encoded or decoded message (2 means half the bytes)",
            factor.clone(),
        );
        registry.register(
            "transform_seconds",
            "Time spent encoding or decoding one message",
            seconds.clone(),
        );
        registry.register(
            "calls",
            "gRPC calls proxied, by method, model and the gRPC status they ended with",
            calls.clone(),
        );
        registry.register(
            "streams_in_flight",
            "gRPC calls currently proxied",
            streams.clone(),
        );
        crate::log_limit::register(registry);
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
        let tls = tls::TlsMetrics::default();
        tls.register(registry);
        Metrics {
            registry: root,
            messages,
            identity_bytes,
            wire_bytes,
            factor,
            seconds,
            calls,
            streams,
            link_rate,
            link_samples,
            connections_open,
            connections_refused,
            connections_timed_out,
            connections_reset_flood,
            tls,
            methods: Bounded::new(MAX_METHOD_LABELS),
            models: Bounded::new(MAX_MODEL_LABELS),
        }
    }

    /// Adds metrics that are read at scrape time, such as the auto-tuner's
    /// ([`Tuner::collector`](crate::codec::tune::Tuner::collector)); their names get the
    /// `bloscar_` prefix too.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry
            .sub_registry_with_prefix("bloscar")
            .register_collector(collector);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one message: `identity_len` is its plain size, `wire_len` its size between
    /// the sidecars; `elapsed` the encode or decode time (zero when passed through);
    /// `model` the model the call names, when known (the label is empty otherwise).
    #[allow(clippy::too_many_arguments)]
    pub fn record_message(
        &self,
        direction: Direction,
        outcome: Outcome,
        method: &str,
        model: Option<&str>,
        identity_len: usize,
        wire_len: usize,
        elapsed: Duration,
    ) {
        let model = self.model_label(model);
        let labels = MessageLabels {
            direction,
            outcome,
            method: self.methods.label(method),
            model: model.clone(),
        };
        self.messages.get_or_create(&labels).inc();
        self.identity_bytes
            .get_or_create(&labels)
            .inc_by(identity_len as u64);
        self.wire_bytes
            .get_or_create(&labels)
            .inc_by(wire_len as u64);
        if outcome != Outcome::Passed {
            let t = TransformLabels {
                direction,
                outcome,
                model,
            };
            if wire_len > 0 {
                self.factor
                    .get_or_create(&t)
                    .observe(identity_len as f64 / wire_len as f64);
            }
            self.seconds
                .get_or_create(&t)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a call that ended with `status` (a [`Code::label`](crate::grpc::status::Code::label):
    /// `ok`, `data_loss`, ...).
    pub fn record_call(&self, method: &str, model: Option<&str>, status: &'static str) {
        self.calls
            .get_or_create(&CallLabels {
                method: self.methods.label(method),
                model: self.model_label(model),
                status,
            })
            .inc();
    }

    fn model_label(&self, model: Option<&str>) -> String {
        model.map_or_else(String::new, |m| self.models.label(m))
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

    /// Creates the TLS series of `listener` (`inbound` serving TLS, `outbound` dialing
    /// it), so that they read 0 before anything happened.
    pub fn tls_started(&self, listener: &'static str) {
        self.tls.listener_started(listener);
    }

    /// Counts a TLS handshake of `listener` that failed for `reason`.
    pub fn record_tls_handshake_failure(&self, listener: &'static str, reason: TlsFailure) {
        self.tls.failure(listener, reason);
    }

    /// Counts a change of `listener`'s TLS files: taken into use (`ok`) or refused.
    pub fn record_tls_reload(&self, listener: &'static str, ok: bool) {
        self.tls.reload(listener, ok);
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

    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

    #[test]
    fn render_shows_recorded_values() {
        let metrics = Metrics::new();
        metrics.record_message(
            Direction::Request,
            Outcome::Encoded,
            INFER,
            Some("resnet:1"),
            4000,
            1000,
            Duration::from_micros(50),
        );
        metrics.record_call(INFER, Some("resnet:1"), "data_loss");
        metrics.record_call("/svc/Unknown", None, "ok");
        let guard = metrics.stream_started();
        let text = metrics.render();
        assert!(text.contains(
            "bloscar_messages_total{direction=\"request\",outcome=\"encoded\",method=\"/inference.GRPCInferenceService/ModelInfer\",model=\"resnet:1\"} 1"
        ), "{text}");
        assert!(text.contains("bloscar_message_identity_bytes_total{direction=\"request\",outcome=\"encoded\",method=\"/inference.GRPCInferenceService/ModelInfer\",model=\"resnet:1\"} 4000"));
        assert!(text.contains("bloscar_message_wire_bytes_total{direction=\"request\",outcome=\"encoded\",method=\"/inference.GRPCInferenceService/ModelInfer\",model=\"resnet:1\"} 1000"));
        assert!(text.contains(
            "bloscar_compression_factor_sum{direction=\"request\",outcome=\"encoded\",model=\"resnet:1\"} 4.0"
        ));
        assert!(text.contains("bloscar_calls_total{method=\"/inference.GRPCInferenceService/ModelInfer\",model=\"resnet:1\",status=\"data_loss\"} 1"));
        assert!(
            text.contains(
                "bloscar_calls_total{method=\"/svc/Unknown\",model=\"\",status=\"ok\"} 1"
            )
        );
        assert!(text.contains("bloscar_streams_in_flight 1"));
        assert!(text.contains(&format!(
            "bloscar_build_info{{version=\"{}\",rust_version=\"1.88\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("\nbloscar_transform_seconds_bucket{le=\"0.00003\",direction=\"request\",outcome=\"encoded\",model=\"resnet:1\"} 0\n"), "{text}");
        assert!(text.contains("\nbloscar_transform_seconds_bucket{le=\"0.0001\",direction=\"request\",outcome=\"encoded\",model=\"resnet:1\"} 1\n"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("\n# TYPE process_resident_memory_bytes gauge\n"));
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
    fn method_and_model_labels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_METHOD_LABELS + 10 {
            metrics.record_message(
                Direction::Response,
                Outcome::Passed,
                &format!("/svc/M{i}"),
                None,
                1,
                1,
                Duration::ZERO,
            );
        }
        assert!(metrics.render().contains("method=\"other\",model=\"\"} 10"));
        let metrics = Metrics::new();
        for i in 0..MAX_MODEL_LABELS + 3 {
            metrics.record_call(INFER, Some(&format!("m{i}")), "ok");
        }
        assert!(metrics.render().contains(
            "bloscar_calls_total{method=\"/inference.GRPCInferenceService/ModelInfer\",model=\"other\",status=\"ok\"} 3"
        ));
    }
}
