//! `bloscar demo` end to end: the real binary, its echo model, both sidecars and the
//! throttled links, on loopback.

use std::process::Command;

/// The table rows of the demo's output, split into trimmed cells.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| tensor"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn demo_succeeds_and_compressible_tensors_use_fewer_link_bytes() {
    let output = Command::new(env!("CARGO_BIN_EXE_bloscar"))
        // A slow link, where compressing these tensors pays for any chooser, even with
        // the unoptimised Blosc of a debug build.
        .args([
            "demo",
            "--scale",
            "0.1",
            "--rounds",
            "1",
            "--bandwidth-mbps",
            "25",
        ])
        .output()
        .expect("runs the bloscar binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // Progress goes to stderr, one line per tensor, path and protocol.
    assert_eq!(stderr.matches("through bloscar...").count(), 8, "{stderr}");

    // One row per tensor over gRPC, and one over HTTP (KServe v2 REST).
    let rows = rows(&stdout);
    assert_eq!(rows.len(), 8, "{stdout}");
    assert_eq!(
        rows.iter().filter(|r| r[0].ends_with("(HTTP)")).count(),
        4,
        "{stdout}"
    );
    let mb = |cell: &str| {
        cell.parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
    };
    for row in &rows {
        let (label, direct, bloscar, codec) = (&row[0], mb(&row[2]), mb(&row[3]), &row[8]);
        // The direct link carries the request and the response: twice the tensor at least.
        assert!(
            direct >= 2.0 * mb(&row[1]) - 0.01,
            "{label}: {direct} MB direct"
        );
        if !label.starts_with("random noise") {
            assert!(
                bloscar < direct,
                "{label}: {bloscar} MB through bloscar vs {direct} MB direct"
            );
            assert_ne!(codec, "none", "{label}");
        }
    }
    let mask = rows
        .iter()
        .find(|r| r[0].starts_with("segmentation mask"))
        .expect("mask row");
    assert!(
        mb(&mask[2]) > 5.0 * mb(&mask[3]),
        "a sparse mask shrinks several-fold: {mask:?}"
    );
}

#[test]
fn demo_rejects_a_bad_codec_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_bloscar"))
        .args(["demo", "--codec", "lz5"])
        .output()
        .expect("runs the bloscar binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BLOSCAR_CODEC") || stderr.contains("codec"),
        "{stderr}"
    );
}
