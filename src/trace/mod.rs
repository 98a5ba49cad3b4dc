//! Distributed traces: a span per gRPC call the layer handles, and a span per message it
//! encodes or decodes, as `tracing` spans that an OpenTelemetry layer
//! (`tracing-opentelemetry`) turns into OTLP spans.
//!
//! A call's span continues the caller's W3C trace context (the request's `traceparent`)
//! and is handed on as the `traceparent` of the request forwarded upstream, so the peer
//! sidecar and the app continue the same trace. Spans are made only once [`enable`] was
//! called (the binary does when OTLP export is configured): when nobody exports them, a
//! call costs no span and the caller's `traceparent` passes through untouched.
//!
//! Span names, attributes and how they nest are listed in docs/sidecar.md ("Traces").
//! Spans are at INFO level with the target `bloscar::trace`. The binary's export layer
//! has a filter of its own for that target, whatever `BLOSCAR_LOG` says; a subscriber
//! with one global filter must let the target through.

mod propagate;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::HeaderMap;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::layer::Role;
use crate::layer::SentMessage;
use crate::locate::Direction;

pub use propagate::{extract, inject};

/// Whether spans are made: set once by whoever installs an exporting subscriber.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Makes the layer trace calls from now on (the process's subscriber should have an
/// OpenTelemetry layer, or the spans go nowhere).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether the layer traces calls.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span of one call through the layer: a child of the caller's span when the
/// request carries a valid `traceparent`, of the current span otherwise (a root in the
/// sidecar). Its kind is `client` on the outbound side (the call leaves the pod) and
/// `server` on the inbound side; `upstream` is where the call is forwarded (the peer
/// sidecar, or the app). [`Span::none`] while tracing is off.
pub(crate) fn call_span(role: Role, method: &str, upstream: &str, headers: &HeaderMap) -> Span {
    if !is_enabled() {
        return Span::none();
    }
    // `/package.Service/Method`, named `package.Service/Method` as OpenTelemetry's RPC
    // conventions name spans.
    let name = method.strip_prefix('/').unwrap_or(method);
    let (service, rpc_method) = name.split_once('/').unwrap_or((name, ""));
    let kind = match role {
        Role::Outbound => "client",
        Role::Inbound => "server",
    };
    let span = tracing::info_span!(
        target: "bloscar::trace",
        "bloscar.call",
        otel.name = name,
        otel.kind = kind,
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = rpc_method,
        rpc.grpc.status_code = Empty,
        bloscar.role = role.name(),
        bloscar.upstream = upstream,
        bloscar.model = Empty,
    );
    if let Some(parent) = extract(headers) {
        // Fails only when the span is disabled (filtered out): nothing to parent then.
        let _ = span.set_parent(parent);
    }
    span
}

/// Hands `span` on as the trace context of the request forwarded upstream.
pub(crate) fn inject_span(span: &Span, headers: &mut HeaderMap) {
    if !span.is_none() {
        inject(&span.context(), headers);
    }
}

/// Records how a call ended on its span: the gRPC status code (by its number, as
/// `rpc.grpc.status_code`), an error status for anything but OK, and the model.
pub(crate) fn finish_call(span: &Span, code: i32, model: Option<&str>) {
    if span.is_none() {
        return;
    }
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "error");
    }
    if let Some(model) = model {
        span.record("bloscar.model", model);
    }
}

/// What work a message span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Reading the app's message and sending it as a container (or as it was).
    Encode,
    /// Restoring the peer's container for the app.
    Decode,
}

/// The span of one message's encoding or decoding, a child of its call's span:
/// [`Span::none`] when the call is not traced.
pub(crate) fn message_span(call: &Span, work: Work, direction: Direction) -> Span {
    if call.is_none() {
        return Span::none();
    }
    let direction = match direction {
        Direction::Request => "request",
        Direction::Response => "response",
    };
    match work {
        Work::Encode => tracing::info_span!(
            target: "bloscar::trace",
            parent: call,
            "bloscar.encode",
            bloscar.direction = direction,
            bloscar.encoded = Empty,
            bloscar.codec = Empty,
            bloscar.bytes_in = Empty,
            bloscar.bytes_out = Empty,
            bloscar.ratio = Empty,
            bloscar.blosc_ms = Empty,
        ),
        Work::Decode => tracing::info_span!(
            target: "bloscar::trace",
            parent: call,
            "bloscar.decode",
            bloscar.direction = direction,
            bloscar.codec = Empty,
            bloscar.bytes_in = Empty,
            bloscar.bytes_out = Empty,
            bloscar.ratio = Empty,
            bloscar.blosc_ms = Empty,
        ),
    }
}

/// Records what an encoding did on its span, from the message as the pipeline sent it:
/// its plain bytes went as its wire bytes (gRPC prefixes included), encoded or as they
/// were, with the setting of its first compressed tensor and the Blosc time.
pub(crate) fn finish_encode(span: &Span, sent: &SentMessage) {
    if span.is_none() {
        return;
    }
    span.record("bloscar.encoded", sent.encoded);
    match sent.options {
        Some(options) => span.record("bloscar.codec", options.to_string()),
        None => span.record("bloscar.codec", "none"),
    };
    record_sizes(span, sent.len, sent.wire_len, sent.len, sent.wire_len);
    record_blosc_time(span, sent.job_time);
}

/// Records what a decoding did on its span: `wire` bytes of records (gRPC prefixes
/// included) restored the message `sent` (its plain length and Blosc time); `codec` is
/// the compressor of its first Blosc chunk.
pub(crate) fn finish_decode(
    span: &Span,
    wire: usize,
    sent: &SentMessage,
    codec: Option<&'static str>,
) {
    if span.is_none() {
        return;
    }
    span.record("bloscar.codec", codec.unwrap_or("none"));
    record_sizes(span, wire, sent.len, sent.len, wire);
    record_blosc_time(span, sent.job_time);
}

/// The time Blosc worked on the message, in milliseconds to the microsecond: the part
/// of the span's duration that is bloscar's own CPU work rather than waiting for bytes.
fn record_blosc_time(span: &Span, time: Duration) {
    span.record("bloscar.blosc_ms", time.as_micros() as f64 / 1000.0);
}

/// Bytes in and out, and the compression ratio: `plain` bytes per `wire` byte, as
/// Blosc reports it (above 1 when compression saved bytes).
fn record_sizes(span: &Span, bytes_in: usize, bytes_out: usize, plain: usize, wire: usize) {
    // Signed: OpenTelemetry's integers are i64, and u64 values would arrive as text.
    let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    span.record("bloscar.bytes_in", int(bytes_in));
    span.record("bloscar.bytes_out", int(bytes_out));
    if wire > 0 {
        let ratio = plain as f64 / wire as f64;
        // Three decimals: the ratio is for people, not for arithmetic.
        span.record("bloscar.ratio", (ratio * 1000.0).round() / 1000.0);
    }
}
