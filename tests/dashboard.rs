//! The Grafana dashboard shipped with the chart (`helm/bloscar/dashboards/bloscar.json`)
//! parses, is well-formed enough for Grafana to import, and queries only series that
//! exist: every `bloscar_*` and `process_*` name in its PromQL must be in
//! docs/sidecar.md's metric list, which tests/metrics_scrape.rs checks against a real
//! scrape. A renamed metric thus fails here instead of leaving an empty panel.

use std::collections::BTreeSet;

use serde_json::Value;

const DASHBOARD: &str = include_str!("../helm/bloscar/dashboards/bloscar.json");
const DOCS: &str = include_str!("../docs/sidecar.md");

/// Every PromQL text of the dashboard: panel targets (rows' nested panels included) and
/// template variable queries.
fn queries(dashboard: &Value) -> Vec<String> {
    fn panels(list: &Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(target["expr"].as_str().expect("a target's expr").to_owned());
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            out.push(query.to_owned());
        }
    }
    out
}

/// The metric names in `query`: identifiers starting `bloscar_` or `process_`, outside
/// quoted label values.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = query.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            // A label value: skip to its closing quote (PromQL escapes with a backslash).
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !ident(bytes[j]))
                .unwrap_or(bytes.len());
            let word = &query[i..end];
            if word.starts_with("bloscar_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The documented names: the first column of docs/sidecar.md's metric table, with the
/// series a histogram adds.
fn documented() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in DOCS.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let (name, kind) = (cells[1].trim_matches('`'), cells[2]);
        if !(name.starts_with("bloscar_") || name.starts_with("process_")) {
            continue;
        }
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn the_dashboard_parses_and_its_panels_are_complete() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["title"], "bloscar");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id repeated"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(refs.insert(target["refId"].as_str().unwrap()), "{title}");
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "model"]);
}

#[test]
fn every_metric_the_dashboard_queries_is_documented() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let documented = documented();
    // The table is there at all (a broken parse must not pass for an empty dashboard).
    assert!(documented.contains("bloscar_calls_total"), "{documented:?}");
    let mut used = BTreeSet::new();
    for query in queries(&dashboard) {
        for name in metric_names(&query) {
            assert!(
                documented.contains(&name),
                "{name} (in `{query}`) is not in docs/sidecar.md's metric list"
            );
            used.insert(name);
        }
    }
    // What the dashboard is for: bytes saved, the factor, time added, calls by status.
    for name in [
        "bloscar_message_identity_bytes_total",
        "bloscar_message_wire_bytes_total",
        "bloscar_compression_factor_bucket",
        "bloscar_transform_seconds_sum",
        "bloscar_transform_seconds_count",
        "bloscar_calls_total",
    ] {
        assert!(used.contains(name), "{name} unused");
    }
}

#[test]
fn metric_names_are_found_as_whole_words() {
    assert_eq!(
        metric_names(
            "sum(rate(bloscar_a_total{x=\"bloscar_b\\\"\"}[5m])) / my_bloscar_c + process_d"
        ),
        ["bloscar_a_total".to_owned(), "process_d".to_owned()].into()
    );
}
