//! Command line: one module per subcommand. Adding one is a variant in [`Command`], its
//! module, and an arm in [`main`].

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod bench;
mod demo;
mod help;
mod logging;
mod run;
mod traces;

/// Exit code of an invalid `BLOSCAR_*` configuration: sysexits' EX_CONFIG, so that an
/// orchestrator's restart reason tells a bad environment apart from a bad command line.
pub const EXIT_CONFIG: u8 = 78;

/// Exit code of an invalid command line: sysexits' EX_USAGE (clap's own default is 2).
pub const EXIT_USAGE: u8 = 64;

/// bloscar: a gRPC sidecar that compresses tensors in flight with Blosc.
///
/// Without a subcommand, runs the sidecar as configured by the BLOSCAR_*
/// environment variables (the same as `bloscar run`).
// Verbatim doc comments: clap prints these lines as written, each short enough for a
// terminal (clap's own wrapping needs a feature and a dependency bloscar does without).
#[derive(Debug, Parser)]
#[command(name = "bloscar", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: the proxy roles and the admin listener (the default)
    #[command(verbatim_doc_comment)]
    Run,
    /// Show bloscar at work on loopback, direct and through both sidecars
    ///
    /// An echo model, both sidecars and a throttled link in one process on
    /// loopback; prints the bytes on the link and the latency, direct and
    /// through bloscar.
    #[command(verbatim_doc_comment)]
    Demo(demo::DemoArgs),
    /// Measure every Blosc setting on tensors per link, with the tuner's pick
    ///
    /// Measures every Blosc setting (codec x level x shuffle) on tensors from
    /// .npy files or a built-in set. For each tensor and link bandwidth: ratio,
    /// compress and decompress MB/s (thread CPU time, the fastest of --repeats
    /// runs on the whole tensor) and the estimated end-to-end time (compress +
    /// transfer + decompress) of every setting, with B after the best time per
    /// link and T after the auto-tuner's pick. Without paths, measures a
    /// built-in set like the demo's: an image-like FP32 batch with noise, a
    /// UINT8 video-frame batch, a segmentation mask and FP32 random noise.
    #[command(verbatim_doc_comment)]
    Bench(bench::BenchArgs),
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let command = Cli::command().after_long_help(help::environment_help());
    let parsed = command
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        // --help and --version are printed to stdout and exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run::main(),
        Command::Demo(args) => demo::main(args),
        Command::Bench(args) => bench::main(args),
    }
}
