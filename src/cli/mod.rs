//! Command line: one module per subcommand. Adding one is a variant in [`Command`], its
//! module, and an arm in [`main`].

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod bench;
mod demo;
mod logging;
mod run;
mod traces;

/// Exit code of an invalid configuration (sysexits' EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// bloscar: a gRPC sidecar that compresses tensors in flight with Blosc.
///
/// Without a subcommand, runs the sidecar as configured by the BLOSCAR_* environment
/// variables (the same as `bloscar run`).
#[derive(Debug, Parser)]
#[command(name = "bloscar", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: the configured proxy roles and the admin listener (the default).
    Run,
    /// Show bloscar at work: an echo model, both sidecars and a throttled link in one
    /// process on loopback; prints the bytes on the link and the latency, direct and
    /// through bloscar.
    Demo(demo::DemoArgs),
    /// Measure every Blosc setting (codec x level x shuffle) on tensors from .npy files
    /// or a built-in set, with the end-to-end time per link and the auto-tuner's pick.
    ///
    /// For each tensor and link bandwidth: ratio, compress and decompress MB/s (thread CPU
    /// time, the fastest of --repeats runs on the whole tensor) and the estimated
    /// end-to-end time (compress + transfer + decompress) of every setting, with B after
    /// the best time per link and T after the auto-tuner's pick. Without paths, measures
    /// a built-in set like the demo's: an image-like FP32 batch with noise, a UINT8
    /// video-frame batch, a segmentation mask and FP32 random noise.
    Bench(bench::BenchArgs),
}

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let command = Cli::command().after_long_help(run::environment_help());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run::main(),
        Command::Demo(args) => demo::main(args),
        Command::Bench(args) => bench::main(args),
    }
}
