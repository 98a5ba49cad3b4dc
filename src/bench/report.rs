//! Renders grid results as text tables or JSON.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use super::TensorResult;

/// A whole `bloscar bench` run, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The links estimated for, Mbit/s; `end_to_end_ms` lists follow this order.
    pub links_mbps: Vec<f64>,
    /// One entry per tensor.
    pub tensors: Vec<TensorResult>,
}

/// The grid of one tensor as a text table: one row per setting (or only the `top`
/// fastest per link, plus storing and the tuner's picks), with `B` after the best
/// end-to-end time per link and `T` after the tuner's pick.
pub fn grid_table(t: &TensorResult, links_mbps: &[f64], top: Option<usize>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} {:?}  {:.2} MB",
        t.name,
        t.dtype,
        t.shape,
        t.bytes as f64 / 1e6
    );
    let shown = shown_rows(t, links_mbps.len(), top);
    let _ = write!(
        out,
        "  {:<14} {:>8} {:>10} {:>10}",
        "setting", "ratio", "comp MB/s", "dec MB/s"
    );
    for l in links_mbps {
        let _ = write!(out, " {:>14}", format!("ms @{}", mbps_label(*l)));
    }
    out.push('\n');
    for (i, p) in t.grid.iter().enumerate() {
        if !shown.contains(&i) {
            continue;
        }
        let speed = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        let _ = write!(
            out,
            "  {:<14} {:>8.2} {:>10} {:>10}",
            p.setting,
            p.ratio,
            speed(p.compress_mbs),
            speed(p.decompress_mbs)
        );
        for (li, link) in t.links.iter().enumerate() {
            let mut mark = String::new();
            if p.setting == link.best {
                mark.push('B');
            }
            if p.setting == link.tuner {
                mark.push('T');
            }
            let _ = write!(out, " {:>11.3} {:<2}", p.end_to_end_ms[li], mark);
        }
        out.push('\n');
    }
    out
}

/// Per link: the best grid point, the tuner's pick and how close the pick came.
pub fn summary_table(t: &TensorResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:>9} {:<14} {:>10} {:<14} {:>10} {:>10} {:>10}",
        "link", "best", "best ms", "tuner pick", "tuner ms", "tuner/best", "search ms"
    );
    for l in &t.links {
        let _ = writeln!(
            out,
            "  {:>9} {:<14} {:>10.3} {:<14} {:>10.3} {:>10.3} {:>10.2}",
            mbps_label(l.link_mbps),
            l.best,
            l.best_ms,
            l.tuner,
            l.tuner_ms,
            l.tuner_over_best,
            l.search_ms
        );
    }
    out
}

/// The whole report as text.
pub fn text(report: &Report, top: Option<usize>) -> String {
    let mut out = String::new();
    for t in &report.tensors {
        out.push_str(&grid_table(t, &report.links_mbps, top));
        out.push('\n');
        out.push_str(&summary_table(t));
        out.push('\n');
    }
    out.push_str(
        "B: lowest estimated end-to-end time at that link (compress, transfer and decompress \
         pipelined in 1 MiB chunks: the slowest stage plus one chunk of the others); \
         T: the auto-tuner's pick.\n",
    );
    out
}

/// `100M`, `1G`, `2.5G`: link labels for column heads.
pub fn mbps_label(mbps: f64) -> String {
    if mbps >= 1000.0 {
        format!("{}G", trim(mbps / 1000.0))
    } else {
        format!("{}M", trim(mbps))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn shown_rows(t: &TensorResult, links: usize, top: Option<usize>) -> BTreeSet<usize> {
    let Some(top) = top else {
        return (0..t.grid.len()).collect();
    };
    let mut shown = BTreeSet::from([0]);
    for li in 0..links {
        let mut order: Vec<usize> = (0..t.grid.len()).collect();
        order.sort_by(|&a, &b| t.grid[a].end_to_end_ms[li].total_cmp(&t.grid[b].end_to_end_ms[li]));
        shown.extend(order.into_iter().take(top));
        if let Some(link) = t.links.get(li) {
            shown.extend(t.grid.iter().position(|p| p.setting == link.tuner));
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_labels() {
        assert_eq!(mbps_label(100.0), "100M");
        assert_eq!(mbps_label(1000.0), "1G");
        assert_eq!(mbps_label(2500.0), "2.5G");
        assert_eq!(mbps_label(10_000.0), "10G");
    }
}
