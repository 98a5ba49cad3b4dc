//! Checks environment files against bloscar's configuration parser.
//!
//! Each argument is a file of `NAME=VALUE` lines: the environment of one sidecar
//! container as a Kubernetes manifest sets it (the Helm chart's checks write them). Every
//! file must parse into a valid [`bloscar::config::Config`] with no unknown `BLOSCAR_*`
//! variable. Prints one line per file; exits with 1 if any file fails.
//!
//! ```sh
//! cargo run --example config_check -- sidecar.env
//! ```

use std::process::ExitCode;

use bloscar::config::Config;

fn check(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let vars = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_once('=')
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .ok_or_else(|| format!("not a NAME=VALUE line: {line:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = Config::from_vars(vars).map_err(|e| e.to_string())?;
    if !config.ignored.is_empty() {
        return Err(format!("unknown variables: {}", config.ignored.join(", ")));
    }
    let listeners = config
        .listeners()
        .iter()
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(format!("mode {:?}, {listeners}", config.mode))
}

fn main() -> ExitCode {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        match check(&path) {
            Ok(summary) => println!("valid   {path}: {summary}"),
            Err(e) => {
                failed = true;
                println!("invalid {path}: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
