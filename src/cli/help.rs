//! The `--help` text after the commands: every `BLOSCAR_*` variable, from the same table
//! as the README's, and the exit statuses, wrapped for a terminal.

use bloscar::config;

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
    help.push_str("\nTraces:\n");
    wrap(
        &mut help,
        "Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) \
         names an OTLP/gRPC collector, e.g. http://otel-collector:4317; OTEL_SERVICE_NAME \
         [bloscar] names the service. The other standard OTEL_* variables (sampler, \
         batching, headers, timeout, compression) apply; see the README.",
        "  ",
    );
    help.push_str("\nExit status:\n");
    wrap(
        &mut help,
        "0 after a shutdown on SIGTERM or SIGINT; 1 when a listener cannot be bound or fails, \
         or a second signal ends the drain; 64 (EX_USAGE) for an invalid command line; \
         78 (EX_CONFIG) for an invalid BLOSCAR_* variable or an OTEL_* setting bloscar \
         cannot honour (e.g. OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf).",
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
