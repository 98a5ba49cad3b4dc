//! The demo's result table.

use std::time::Duration;

use super::{DemoArgs, Measured};

/// One tensor's results.
pub struct Row {
    pub label: String,
    pub tensor_bytes: u64,
    pub direct: Measured,
    pub bloscar: Measured,
    /// The compression setting the sidecar chose.
    pub codec: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

/// A Markdown table, one row per tensor, then a line with the totals.
pub fn table(rows: &[Row], args: &DemoArgs) -> String {
    let head = [
        "tensor",
        "MB",
        "link MB direct",
        "link MB bloscar",
        "ratio",
        "ms direct",
        "ms bloscar",
        "speed-up",
        "codec chosen",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.label.clone(),
                mb(r.tensor_bytes),
                mb(r.direct.link_bytes),
                mb(r.bloscar.link_bytes),
                format!(
                    "{:.2}",
                    r.direct.link_bytes as f64 / r.bloscar.link_bytes.max(1) as f64
                ),
                ms(r.direct.latency),
                ms(r.bloscar.latency),
                format!(
                    "{:.2}x",
                    r.direct.latency.as_secs_f64() / r.bloscar.latency.as_secs_f64().max(1e-9)
                ),
                r.codec.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: &[String]| {
        let body: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 || i == head.len() - 1 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        format!("| {} |", body.join(" | "))
    };
    let mut out = vec![
        format!(
            "bloscar demo: {} Mbit/s link each way, codec {}, median of {} calls per tensor and path; \
             link bytes per call, both directions; every response checked bit for bit",
            args.bandwidth_mbps, args.codec, args.rounds
        ),
        String::new(),
        line(&head.map(str::to_owned)),
        format!(
            "|{}|",
            widths
                .iter()
                .enumerate()
                .map(|(i, w)| if i == 0 || i == head.len() - 1 {
                    "-".repeat(w + 2)
                } else {
                    format!("{}:", "-".repeat(w + 1))
                })
                .collect::<Vec<_>>()
                .join("|")
        ),
    ];
    out.extend(cells.iter().map(|c| line(c)));
    let direct: u64 = rows.iter().map(|r| r.direct.link_bytes).sum();
    let bloscar: u64 = rows.iter().map(|r| r.bloscar.link_bytes).sum();
    let t_direct: Duration = rows.iter().map(|r| r.direct.latency).sum();
    let t_bloscar: Duration = rows.iter().map(|r| r.bloscar.latency).sum();
    out.push(String::new());
    out.push(format!(
        "total: link {} MB direct, {} MB through bloscar ({:.2}x fewer); latency {} ms direct, {} ms through bloscar",
        mb(direct),
        mb(bloscar),
        direct as f64 / bloscar.max(1) as f64,
        ms(t_direct),
        ms(t_bloscar)
    ));
    out.join("\n")
}
