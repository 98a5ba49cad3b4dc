//! tracing set-up from BLOSCAR_LOG and BLOSCAR_LOG_FORMAT.

use std::io::IsTerminal;

use bloscar::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: logs go to stderr, so that subcommands' own output on
/// stdout stays clean.
pub fn init(config: &Config) {
    // The filter was validated with the configuration.
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
