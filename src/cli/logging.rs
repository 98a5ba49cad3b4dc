//! tracing set-up from BLOSCAR_LOG and BLOSCAR_LOG_FORMAT, and the span export layer.

use std::io::IsTerminal;

use bloscar::config::{Config, LogFormat};
use bloscar::log_limit::DependencyWarnings;
use opentelemetry_sdk::trace::Tracer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: logs go to stderr, so that subcommands' own output on
/// stdout stays clean.
pub fn init(config: &Config) {
    init_with_traces(config, None);
}

/// [`init`], and with a `tracer`, bloscar's spans are exported too (see
/// `super::traces`). The log filter applies to the log lines only: the exported spans do
/// not depend on the log level, and dependencies' spans are never exported.
pub fn init_with_traces(config: &Config, tracer: Option<Tracer>) {
    // The filter was validated with the configuration.
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // h2 logs a warning per connection it closes for a protocol error: an attacker's loop
    // of connections must not become a flood of lines.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(DependencyWarnings::new(std::io::stderr))
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(super::traces::layer(tracer))
        .init();
}
