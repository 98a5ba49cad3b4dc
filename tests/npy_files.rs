//! The `.npy` reader on files numpy wrote, and `bloscar bench` reading them.

mod arrays;

use std::collections::BTreeMap;
use std::process::Command;

use bloscar::DType;
use bloscar::npy::{self, NpyError};

#[derive(serde::Deserialize)]
struct Expected {
    descr: String,
    shape: Vec<usize>,
}

fn dtype_of_descr(descr: &str) -> (DType, usize) {
    match descr.trim_start_matches(['<', '|']) {
        "b1" => (DType::Bool, 1),
        "u1" => (DType::U8, 1),
        "i1" => (DType::I8, 1),
        "u2" => (DType::U16, 2),
        "i2" => (DType::I16, 2),
        "f2" => (DType::F16, 2),
        "u4" => (DType::U32, 4),
        "i4" => (DType::I32, 4),
        "f4" => (DType::F32, 4),
        "u8" => (DType::U64, 8),
        "i8" => (DType::I64, 8),
        "f8" => (DType::F64, 8),
        "c8" => (DType::Complex64, 8),
        "c16" => (DType::Complex128, 16),
        other => panic!("the manifest names an unexpected dtype {other}"),
    }
}

#[test]
fn reads_every_dtype_shape_and_version_numpy_writes() {
    let manifest: BTreeMap<String, Expected> =
        serde_json::from_slice(&arrays::read("npy/manifest.json")).unwrap();
    assert!(manifest.len() >= 3 * 14 * 6, "{} arrays", manifest.len());
    for version in ["v1_", "v2_", "v3_"] {
        assert!(
            manifest.keys().any(|k| k.starts_with(version)),
            "no {version} files"
        );
    }
    for (name, want) in &manifest {
        let file = arrays::read(&format!("npy/{name}.npy"));
        let raw = arrays::read(&format!("npy/{name}.bin"));
        let a = npy::parse(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.shape, want.shape, "{name}");
        assert_eq!(a.descr, want.descr, "{name}");
        assert_eq!(
            (a.dtype, a.elem_size),
            dtype_of_descr(&want.descr),
            "{name}"
        );
        assert_eq!(a.data, raw.as_slice(), "{name}");
    }
}

#[test]
fn refuses_arrays_it_cannot_send() {
    let cases = [
        ("big_endian", NpyError::UnsupportedDtype(">f4".into())),
        ("fortran", NpyError::FortranOrder),
        ("strings", NpyError::UnsupportedDtype("<U2".into())),
        ("objects", NpyError::UnsupportedDtype("|O".into())),
    ];
    for (name, want) in cases {
        let file = arrays::read(&format!("npy/refused/{name}.npy"));
        assert_eq!(npy::parse(&file).unwrap_err(), want, "{name}");
    }
    let structured = arrays::read("npy/refused/structured.npy");
    assert!(
        matches!(npy::parse(&structured), Err(NpyError::UnsupportedDtype(d)) if d.starts_with('['))
    );
}

fn bloscar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bloscar"))
}

#[test]
fn bench_reads_a_folder_and_prints_json() {
    let dir = arrays::dir().join("images");
    let output = bloscar()
        .args([
            "bench",
            "--json",
            "--codecs",
            "lz4,zstd",
            "--levels",
            "1,5",
            "--repeats",
            "1",
        ])
        .args(["--link-mbps", "100,10000"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["links_mbps"], serde_json::json!([100.0, 10000.0]));
    let tensors = report["tensors"].as_array().unwrap();
    let names: Vec<&str> = tensors
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "astronaut_f32.npy",
            "astronaut_jpeg.npy",
            "astronaut_u8.npy",
            "camera_u8.npy",
            "coffee_jpeg.npy"
        ]
    );
    for t in tensors {
        let grid = t["grid"].as_array().unwrap();
        // store, then lz4 and zstd at two levels with every shuffle that applies.
        let shuffles = if t["dtype"] == "uint8" { 2 } else { 3 };
        assert_eq!(grid.len(), 1 + 2 * 2 * shuffles, "{}", t["name"]);
        assert_eq!(grid[0]["setting"], "store");
        for p in grid {
            assert_eq!(p["end_to_end_ms"].as_array().unwrap().len(), 2);
            let ratio = p["ratio"].as_f64().unwrap();
            let bytes = t["bytes"].as_f64().unwrap();
            let compressed = p["compressed_bytes"].as_f64().unwrap();
            assert!((ratio - bytes / compressed).abs() < 1e-9);
        }
        let links = t["links"].as_array().unwrap();
        assert_eq!(links.len(), 2);
        for l in links {
            let ratio = l["tuner_ms"].as_f64().unwrap() / l["best_ms"].as_f64().unwrap();
            assert!(
                (l["tuner_over_best"].as_f64().unwrap() - ratio).abs() < 1e-9,
                "{l}"
            );
            let best = l["best"].as_str().unwrap();
            assert!(grid.iter().any(|p| p["setting"] == best));
        }
    }
    let jpeg = &tensors[1];
    for l in jpeg["links"].as_array().unwrap() {
        assert_eq!(l["tuner"], "store", "JPEG bytes: {l}");
    }
}

#[test]
fn bench_prints_tables_for_the_built_in_set() {
    let output = bloscar()
        .args([
            "bench",
            "--codecs",
            "lz4",
            "--levels",
            "1",
            "--repeats",
            "1",
            "--top",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    for name in ["image_fp32", "frames_u8", "mask_u8", "noise_fp32"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    for head in ["ms @100M", "ms @1G", "ms @10G", "tuner/best"] {
        assert!(text.contains(head), "{head} missing from:\n{text}");
    }
}

#[test]
fn bench_reports_unreadable_files() {
    let bad = arrays::dir().join("npy/refused/fortran.npy");
    let output = bloscar().arg("bench").arg(&bad).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("Fortran"), "{err}");
    let output = bloscar()
        .args(["bench", "--levels", "3-1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
