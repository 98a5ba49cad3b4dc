//! OTLP trace export, configured the OpenTelemetry way: off unless
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` names a
//! collector. The SDK reads the other standard variables itself (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`,
//! `OTEL_EXPORTER_OTLP_*_HEADERS`, `_TIMEOUT`, `_COMPRESSION`).
//!
//! Spans leave in batches from a task on the sidecar's own tokio runtime: the exporter's
//! tonic channel lives there, so [`Traces::start`] and [`Traces::shutdown`] run inside it.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The collector for traces only; wins over [`ENDPOINT`].
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The collector for every signal (bloscar exports traces only).
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `none` turns export off whatever the endpoint.
const EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `true` turns the SDK off.
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// The transports the variables may ask for; bloscar has gRPC only.
const PROTOCOLS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// A trace export setting bloscar cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// A transport other than gRPC.
    #[error("{variable}={value}: bloscar exports traces with OTLP over gRPC only (grpc)")]
    Protocol {
        /// The variable that asked for it.
        variable: &'static str,
        /// What it asked for.
        value: String,
    },
    /// An exporter other than OTLP.
    #[error("{EXPORTER}={0}: bloscar exports traces with otlp, or none")]
    Exporter(String),
    /// The exporter could not be built from the variables (e.g. a malformed endpoint).
    #[error("OTLP trace exporter: {0}")]
    Build(#[from] ExporterBuildError),
}

impl TracesError {
    /// The variable at fault, when one is.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            TracesError::Protocol { variable, .. } => Some(variable),
            TracesError::Exporter(_) => Some(EXPORTER),
            TracesError::Build(_) => None,
        }
    }
}

/// Whether the environment (`env` looks a variable up) asks for trace export: a
/// collector endpoint is set and export is not turned off.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> Result<bool, TracesError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set(SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    match set(EXPORTER).map(|v| v.trim().to_ascii_lowercase()) {
        None => {}
        Some(v) if v == "otlp" => {}
        Some(v) if v == "none" => return Ok(false),
        Some(v) => return Err(TracesError::Exporter(v)),
    }
    if set(TRACES_ENDPOINT).or_else(|| set(ENDPOINT)).is_none() {
        return Ok(false);
    }
    // The first variable set decides, as the signal's own wins over the general one.
    if let Some((variable, value)) = PROTOCOLS
        .iter()
        .find_map(|name| set(name).map(|value| (*name, value)))
        && value.trim() != "grpc"
    {
        return Err(TracesError::Protocol { variable, value });
    }
    Ok(true)
}

/// The running export; [`Traces::shutdown`] sends what is left.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Starts exporting, when the environment asks for it: the tracer for the
    /// `tracing` layer, and what shuts the export down. Runs inside the tokio runtime.
    pub fn start() -> Result<Option<(Traces, Tracer)>, TracesError> {
        let env = |name: &str| std::env::var(name).ok();
        if !wanted(env)? {
            return Ok(None);
        }
        // Endpoint, headers, timeout and compression come from the OTEL_* variables.
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_protocol(opentelemetry_otlp::Protocol::Grpc)
            .build()?;
        let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource(env))
            .build();
        let tracer = provider.tracer("bloscar");
        bloscar::trace::enable();
        Ok(Some((Traces { provider }, tracer)))
    }

    /// Exports the spans still queued and stops. Blocks: call it off the runtime's
    /// threads (`spawn_blocking`) while the runtime still runs the export task.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "trace export did not shut down cleanly");
        }
    }
}

/// The `tracing` layer that exports bloscar's spans through `tracer` (none without
/// one): the spans of `bloscar::trace` only, whatever the log level, so that neither
/// dependencies' spans nor the exporter's own connection end up in traces. Source
/// locations, thread names and busy/idle times are left out: they describe bloscar's
/// tasks, not the call.
pub fn layer<S>(tracer: Option<Tracer>) -> Option<impl Layer<S>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let spans = Targets::new().with_target("bloscar::trace", LevelFilter::INFO);
    tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(spans)
    })
}

/// The resource the spans describe: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
/// as the SDK reads them, the service named `bloscar` when neither names it, and the
/// version.
fn resource(env: impl Fn(&str) -> Option<String>) -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let mut builder = Resource::builder();
    if !named {
        builder = builder.with_service_name("bloscar");
    }
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted_with(vars: &[(&str, &str)]) -> Result<bool, TracesError> {
        wanted(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        assert!(!wanted_with(&[]).unwrap());
        assert!(!wanted_with(&[(ENDPOINT, " ")]).unwrap());
        assert!(!wanted_with(&[("OTEL_SERVICE_NAME", "x")]).unwrap());
    }

    #[test]
    fn either_endpoint_turns_export_on() {
        assert!(wanted_with(&[(ENDPOINT, "http://collector:4317")]).unwrap());
        assert!(wanted_with(&[(TRACES_ENDPOINT, "http://collector:4317")]).unwrap());
        assert!(wanted_with(&[(ENDPOINT, "http://c:4317"), (EXPORTER, "otlp")]).unwrap());
    }

    #[test]
    fn export_can_be_turned_off_with_an_endpoint_set() {
        let on = (ENDPOINT, "http://collector:4317");
        assert!(!wanted_with(&[on, (EXPORTER, "none")]).unwrap());
        assert!(!wanted_with(&[on, (SDK_DISABLED, "TRUE")]).unwrap());
    }

    #[test]
    fn transports_and_exporters_bloscar_lacks_are_errors() {
        let on = (ENDPOINT, "http://collector:4317");
        let err = wanted_with(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: bloscar exports traces with OTLP \
             over gRPC only (grpc)"
        );
        // The traces' own variable wins over the general one.
        assert!(
            wanted_with(&[
                on,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ])
            .unwrap()
        );
        let err = wanted_with(&[on, (EXPORTER, "zipkin")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_TRACES_EXPORTER=zipkin: bloscar exports traces with otlp, or none"
        );
    }

    #[test]
    fn the_service_is_named_bloscar_unless_the_environment_names_it() {
        let name = |vars: &[(&str, &str)]| {
            let r = resource(|n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            });
            r.get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string())
        };
        assert_eq!(name(&[]).as_deref(), Some("bloscar"));
        let service_named = name(&[("OTEL_SERVICE_NAME", "edge")]);
        // The SDK reads the variable from the process environment, which this test
        // leaves alone: bloscar only refrains from naming the service.
        assert_ne!(service_named.as_deref(), Some("bloscar"));
    }
}
