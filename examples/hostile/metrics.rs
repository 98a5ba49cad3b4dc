//! The sidecars' Prometheus counters, read from their admin listeners before and after
//! a case, and the changes worth reporting.

use std::collections::BTreeMap;

/// Counter families whose changes say what a sidecar did to an attacker.
const REPORTED: [&str; 3] = [
    "bloscar_connections_refused_total",
    "bloscar_connections_timed_out_total",
    "bloscar_calls_total",
];

/// One scrape: every sample, keyed by its name and labels as written.
#[derive(Clone, Debug, Default)]
pub struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// Parses the text exposition format (comments skipped).
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    /// The sum of every sample of `family` whose labels contain `label` (e.g.
    /// `listener="inbound"`; "" matches all).
    pub fn sum(&self, family: &str, label: &str) -> f64 {
        self.0
            .iter()
            .filter(|(key, _)| key.split('{').next() == Some(family) && key.contains(label))
            .map(|(_, value)| value)
            .sum()
    }

    /// The reported counters that grew since `before`, shortened:
    /// `calls{/svc/M,,deadline_exceeded} +12`.
    pub fn growth_since(&self, before: &Scrape) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| REPORTED.iter().any(|f| key.split('{').next() == Some(f)))
            // Calls that ended well say nothing about an attack.
            .filter(|(key, _)| !key.contains("status=\"ok\""))
            .filter_map(|(key, &after)| {
                let delta = after - before.0.get(key).copied().unwrap_or(0.0);
                (delta > 0.0).then(|| format!("{} +{delta}", short(key)))
            })
            .collect()
    }
}

/// `bloscar_calls_total{method="m",model="",status="x"}` as `calls{m,,x}`.
fn short(key: &str) -> String {
    let (name, labels) = key.split_once('{').unwrap_or((key, ""));
    let name = name
        .trim_start_matches("bloscar_")
        .trim_end_matches("_total");
    let values: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| Some(pair.split_once('=')?.1.trim_matches('"')))
        .collect();
    if values.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", values.join(","))
    }
}
