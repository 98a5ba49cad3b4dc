//! tracing set-up from BLOSCAR_LOG and BLOSCAR_LOG_FORMAT.

use std::io::IsTerminal;

use bloscar::config::{Config, LogFormat};
use bloscar::log_limit::DependencyWarnings;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: logs go to stderr, so that subcommands' own output on
/// stdout stays clean.
pub fn init(config: &Config) {
    // The filter was validated with the configuration.
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // h2 logs a warning per connection it closes for a protocol error: an attacker's
    // loop of connections must not become a flood of lines.
    let limit = DependencyWarnings::new();
    match config.log_format {
        LogFormat::Text => builder.finish().with(limit).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(limit)
            .init(),
    }
}
