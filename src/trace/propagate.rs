//! W3C trace context (`traceparent`, `tracestate`) read from and written to HTTP header
//! maps, through OpenTelemetry's standard propagator.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// Header names read as text; values that are not visible ASCII are skipped.
struct Reader<'a>(&'a HeaderMap);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes replace any value the header had: the request carries one trace context.
struct Writer<'a>(&'a mut HeaderMap);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's span context from `headers`, when they carry a valid `traceparent`.
pub fn extract(headers: &HeaderMap) -> Option<Context> {
    let context = TraceContextPropagator::new().extract(&Reader(headers));
    context.span().span_context().is_valid().then_some(context)
}

/// Writes `context`'s span as the `traceparent` (and `tracestate`) of `headers`; a
/// context without a valid span leaves the headers as they are.
pub fn inject(context: &Context, headers: &mut HeaderMap) {
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(context, &mut Writer(headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_extracted_as_a_remote_parent() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        headers.insert("tracestate", HeaderValue::from_static("vendor=1"));
        let context = extract(&headers).expect("a valid traceparent");
        let span = context.span();
        let parent = span.span_context();
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(parent.is_remote());
        assert!(parent.is_sampled());
        assert_eq!(parent.trace_state().header(), "vendor=1");
    }

    #[test]
    fn missing_or_malformed_traceparents_give_no_parent() {
        assert!(extract(&HeaderMap::new()).is_none());
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-zz-00-01"));
        assert!(extract(&headers).is_none());
    }

    #[test]
    fn injection_replaces_the_callers_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        let ours = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("1111111111111111").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        inject(&Context::new().with_remote_span_context(ours), &mut headers);
        assert_eq!(
            headers.get_all("traceparent").iter().collect::<Vec<_>>(),
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"]
        );
    }

    #[test]
    fn an_empty_context_leaves_the_headers_alone() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        inject(&Context::new(), &mut headers);
        assert_eq!(headers.get("traceparent").unwrap(), PARENT);
    }
}
