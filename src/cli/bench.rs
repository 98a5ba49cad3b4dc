//! `bloscar bench`: measure every Blosc setting on real tensors, and what the tuner picks.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use bloscar::bench::{self, GridSpec, Tensor, report};
use bloscar::codec::tune::TunerConfig;
use bloscar::{Codec, Shuffle, npy};

/// The options of `bloscar bench` (its help text is on the `Bench` command).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// .npy files, or folders whose .npy files are all measured
    /// (numpy format 1.0, 2.0 or 3.0; little-endian numeric or bool
    /// dtypes in C order)
    #[arg(verbatim_doc_comment)]
    paths: Vec<PathBuf>,
    /// Link bandwidths in Mbit/s (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [100.0, 1000.0, 10000.0], value_parser = parse_mbps)]
    link_mbps: Vec<f64>,
    /// Codecs of the grid (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = Codec::ALL.to_vec())]
    codecs: Vec<Codec>,
    /// Levels of the grid: a range like 1-9 or a list like 1,5,9.
    #[arg(long, default_value = "1-9", value_parser = parse_levels)]
    levels: Levels,
    /// Shuffle modes of the grid (comma-separated: none, byte, bit).
    #[arg(long, value_delimiter = ',', default_values_t = Shuffle::ALL.to_vec())]
    shuffles: Vec<Shuffle>,
    /// Runs per grid point; the fastest counts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeats: u16,
    /// Only the N fastest settings per link (plus storing and tuner picks).
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Tensors below this many bytes stay uncompressed, as in the sidecar.
    #[arg(long, default_value_t = TunerConfig::default().min_size)]
    min_tensor_bytes: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    json_out: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
}

/// A list of Blosc levels.
#[derive(Debug, Clone)]
pub struct Levels(Vec<u8>);

fn parse_levels(s: &str) -> Result<Levels, String> {
    let level = |t: &str| match t.trim().parse::<u8>() {
        Ok(l) if l <= 9 => Ok(l),
        _ => Err(format!("{t:?} is not a level from 0 to 9")),
    };
    let levels = match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (level(a)?, level(b)?);
            if a > b {
                return Err(format!("empty range {s:?}"));
            }
            (a..=b).collect()
        }
        None => s.split(',').map(level).collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Levels(levels))
}

fn parse_mbps(s: &str) -> Result<f64, String> {
    match f64::from_str(s.trim()) {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a bandwidth above 0 (Mbit/s)")),
    }
}

/// Runs the benchmark and prints its tables or JSON to stdout.
pub fn main(args: BenchArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bloscar bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &BenchArgs) -> Result<(), String> {
    let tensors = if args.paths.is_empty() {
        bench::synthetic::demo_tensors()
    } else {
        load(&args.paths)?
    };
    let spec = GridSpec {
        codecs: args.codecs.clone(),
        levels: args.levels.0.clone(),
        shuffles: args.shuffles.clone(),
        repeats: usize::from(args.repeats),
        slow_run: Duration::from_millis(200),
    };
    let tuner = TunerConfig {
        min_size: args.min_tensor_bytes,
        ..TunerConfig::default()
    };
    let mut progress = Progress::new(!args.no_progress && std::io::stderr().is_terminal());
    let mut results = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let label = format!("[{}/{}] {}", i + 1, tensors.len(), t.name);
        let result = bench::run(
            t,
            &spec,
            &args.link_mbps,
            &tuner,
            &mut |done, total, setting| progress.show(&label, done, total, setting),
        )
        .map_err(|e| format!("{}: {e}", t.name))?;
        results.push(result);
    }
    progress.clear();
    let report = report::Report {
        links_mbps: args.link_mbps.clone(),
        tensors: results,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let out = if args.json {
        json
    } else {
        report::text(&report, args.top)
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| format!("cannot write the report: {e}"))
}

/// Reads every .npy file named, or found directly in a named folder (sorted by name).
fn load(paths: &[PathBuf]) -> Result<Vec<Tensor>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "npy"))
                .collect();
            if found.is_empty() {
                return Err(format!("{}: no .npy files in this folder", path.display()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files.iter().map(|f| read_npy(f)).collect()
}

fn read_npy(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let array = npy::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Tensor {
        name: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        dtype: array.dtype,
        // The typesize the sidecar compresses this dtype with (a complex number's scalar
        // part), not the .npy element width, so that the figures are the sidecar's.
        elem_size: array.dtype.elem_size(),
        shape: array.shape,
        data: array.data.to_vec(),
    })
}

/// A one-line progress display on a terminal's stderr.
struct Progress {
    enabled: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    fn show(&mut self, label: &str, done: usize, total: usize, setting: &str) {
        if !self.enabled {
            return;
        }
        const WIDTH: usize = 30;
        let filled = done * WIDTH / total.max(1);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{label} [{bar}] {done}/{total} {setting}");
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use bloscar::DType;

    use super::*;

    /// A version 1.0 `.npy` file of `descr` elements with `shape` and `data`.
    fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        // numpy pads the preamble and header to a multiple of 64 bytes, ending in '\n'.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn complex_arrays_are_measured_with_the_sidecars_typesize() {
        let dir = std::env::temp_dir().join(format!("bloscar-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.npy");
        std::fs::write(&path, npy_bytes("<c8", "(3,)", &[7; 24])).unwrap();
        let tensor = read_npy(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(tensor.dtype, DType::Complex64);
        // The sidecar shuffles a complex number's scalar parts, so the bench must too.
        assert_eq!(tensor.elem_size, DType::Complex64.elem_size());
        assert_eq!(tensor.data, vec![7; 24]);
    }
}
