//! Content negotiation of `/metrics`: OpenMetrics 1.0 when the scraper asks for it (as
//! Prometheus does), the classic text format 0.0.4 otherwise.
//!
//! prometheus-client writes OpenMetrics only. The two text formats differ, for what this
//! sidecar exposes, in three places, which [`to_text_004`] rewrites: a counter family is
//! named with its `_total` suffix in 0.0.4, there are no `# UNIT` lines, and there is no
//! `# EOF` line.

use std::collections::HashSet;

/// Content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the Prometheus text format 0.0.4.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header value asks for OpenMetrics: any media range naming
/// `application/openmetrics-text` with a quality above zero.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("");
        if !kind.eq_ignore_ascii_case("application/openmetrics-text") {
            return false;
        }
        parts
            .filter_map(|p| p.strip_prefix("q="))
            .all(|q| q.parse::<f32>().map_or(true, |q| q > 0.0))
    })
}

/// `openmetrics` (as prometheus-client writes it) in the text format 0.0.4.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
    }

    #[test]
    fn rewrites_counters_and_drops_om_only_lines() {
        let om = "# HELP x_calls Calls.\n# TYPE x_calls counter\nx_calls_total{a=\"b\"} 1\n\
                  # HELP x_open Open.\n# TYPE x_open gauge\n# UNIT x_open bytes\nx_open 2\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP x_calls_total Calls.\n# TYPE x_calls_total counter\nx_calls_total{a=\"b\"} 1\n\
             # HELP x_open Open.\n# TYPE x_open gauge\nx_open 2\n"
        );
    }
}
