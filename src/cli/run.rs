//! `bloscar run`: the sidecar process. Configuration, logging, the runtime, signals.

use std::process::ExitCode;

use bloscar::config::{self, Config};
use bloscar::layer::Role;
use bloscar::sidecar::Sidecar;
use tokio::signal::unix::{SignalKind, signal};

use super::{EXIT_CONFIG, logging};

/// Width of the `--help` text: a terminal's 80 columns, minus a margin.
const HELP_WIDTH: usize = 78;

/// The `--help` text listing the environment variables, their defaults and the exit
/// codes: the same words as the README's configuration table, wrapped for a terminal.
pub fn environment_help() -> String {
    let mut help = String::new();
    wrap(
        &mut help,
        "Environment (the README's configuration table; defaults in brackets):",
        "",
    );
    for v in config::VARIABLES {
        let default = if v.default.starts_with('(') {
            v.default.to_string()
        } else {
            format!("[{}]", v.default)
        };
        help.push_str(&format!("\n  {} {default}\n", v.name));
        let meaning = config::plain_text(v.meaning);
        wrap(&mut help, &format!("{meaning}."), "      ");
        wrap(&mut help, &format!("Accepts {}.", v.accepts), "      ");
    }
    help.push_str("\nExit status:\n");
    wrap(
        &mut help,
        "0 after a shutdown on SIGTERM or SIGINT; 1 when a listener cannot be bound or fails, \
         or a second signal ends the drain; 64 (EX_USAGE) for an invalid command line; \
         78 (EX_CONFIG) for an invalid BLOSCAR_* variable.",
        "  ",
    );
    help
}

/// Appends `text` to `out` in lines of at most [`HELP_WIDTH`] columns (a longer word
/// gets a line of its own), each starting with `indent`.
fn wrap(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > HELP_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// Runs the sidecar until SIGTERM or SIGINT and the drain that follows.
pub fn main() -> ExitCode {
    // Logging first, from its own two variables, so that an invalid configuration is
    // reported in the chosen format (a JSON line for a log collector).
    logging::init(&Config::logging_from_vars(Config::env_vars()));
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(
                variable = e.variable(),
                error = %e,
                exit_code = EXIT_CONFIG,
                "invalid configuration"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for name in &config.ignored {
        tracing::warn!(variable = %name, "not a bloscar configuration variable; ignored");
    }
    let runtime = match runtime_builder(config.io_threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

/// The runtime for `io_threads` threads. One is a current-thread runtime, like
/// linkerd2-proxy's default: a call's tasks (its two connections and its stream) wake one
/// another without crossing threads: on the proxy benchmark it took about 10 % less CPU
/// per small call, and served 15 % more of them per second, than a one-worker
/// multi-thread runtime, whose hand-overs go through its shared queues.
/// Blosc jobs run on the blocking pool either way.
fn runtime_builder(io_threads: usize) -> tokio::runtime::Builder {
    if io_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(io_threads);
        builder
    }
}

async fn serve(config: Config) -> ExitCode {
    // Signal handlers first: a SIGTERM that arrives while listeners bind must drain, not
    // kill the process.
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let sidecar = match Sidecar::bind(&config).await {
        Ok(sidecar) => sidecar,
        Err(e) => {
            // One line, in the log's format: the variable, the address and the cause.
            tracing::error!(
                variable = e.variable,
                address = %e.addr,
                error = %e,
                "cannot listen"
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = |role| sidecar.proxy_addr(role).map(|a| a.to_string());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = %config.mode,
        inbound = addr(Role::Inbound),
        inbound_forward = addr(Role::Inbound).map(|_| config.inbound_forward.as_str()),
        outbound = addr(Role::Outbound),
        outbound_forward = config.outbound_forward.as_deref(),
        admin = %sidecar.admin_addr(),
        codec = %config.codec,
        min_tensor_bytes = config.min_tensor_bytes,
        max_message_bytes = config.max_message_bytes,
        "started"
    );
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        // A second signal while draining ends the process at once.
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::warn!("second signal: exiting without waiting for in-flight streams");
            std::process::exit(1);
        });
    };
    // A listener's failure was logged, with its role, where it happened.
    match sidecar.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
