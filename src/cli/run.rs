//! `bloscar run`: the sidecar process. Configuration, logging, the runtime, signals.

use std::process::ExitCode;

use bloscar::config::Config;
use bloscar::layer::Role;
use bloscar::sidecar::{Sidecar, StartError};
use tokio::signal::unix::{SignalKind, signal};

use super::traces::Traces;
use super::{EXIT_CONFIG, logging};

/// Logs a configuration error as one line, and the exit status that says so.
fn invalid_configuration(
    variable: Option<&'static str>,
    error: &dyn std::fmt::Display,
) -> ExitCode {
    tracing::error!(variable, error = %error, exit_code = EXIT_CONFIG, "invalid configuration");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs the sidecar until SIGTERM or SIGINT and the drain that follows.
pub fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            // Logging from its own two variables, so that the error is reported in the
            // chosen format (a JSON line for a log collector).
            logging::init(&Config::logging_from_vars(Config::env_vars()));
            return invalid_configuration(Some(e.variable()), &e);
        }
    };
    let runtime = match runtime_builder(config.io_threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bloscar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The trace exporter's channel and batch task live on the runtime.
    let traces = match runtime.block_on(async { Traces::start() }) {
        Ok(traces) => traces,
        Err(e) => {
            // Reported like any configuration error, in the chosen log format.
            logging::init(&config);
            return invalid_configuration(e.variable(), &e);
        }
    };
    let (traces, tracer) = traces.unzip();
    logging::init_with_traces(&config, tracer);
    for name in &config.ignored {
        tracing::warn!(variable = %name, "not a bloscar configuration variable; ignored");
    }
    runtime.block_on(async move {
        let code = serve(config).await;
        // The spans of the last calls leave before the process does.
        if let Some(traces) = traces {
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        code
    })
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
        // A certificate file that cannot be used is a configuration error.
        Err(StartError::Tls(e)) => return invalid_configuration(Some(e.variable()), &e),
        Err(StartError::Bind(e)) => {
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
