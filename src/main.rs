//! The `bloscar` binary: the sidecar by default, and tools as subcommands.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
