//! The codec grid benchmark behind `bloscar bench`: every codec x level x shuffle on a
//! tensor, the estimated end-to-end time per link, and the tuner's pick beside the best.
//!
//! Measuring is CPU work only; reading files and printing belong to the caller.

pub mod report;
pub mod synthetic;

use std::time::Duration;

use crate::codec::tune::clock::Stopwatch;

use serde::Serialize;

use crate::codec::tune::cost::{Measurement, Objective, mbps_to_bytes_per_sec};
use crate::codec::tune::{Tuner, TunerConfig};
use crate::codec::{self, Codec, CodecError, CompressOptions, Shuffle};
pub use synthetic::Tensor;

/// Which settings to measure and how carefully.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSpec {
    /// Codecs to try.
    pub codecs: Vec<Codec>,
    /// Levels to try (1-9; 0 is Blosc's copy, which storing beats).
    pub levels: Vec<u8>,
    /// Shuffle modes to try.
    pub shuffles: Vec<Shuffle>,
    /// Runs per point; the fastest counts (the others met interference).
    pub repeats: usize,
    /// A point whose first run takes longer than this is run only once.
    pub slow_run: Duration,
}

impl Default for GridSpec {
    fn default() -> Self {
        Self {
            codecs: Codec::ALL.to_vec(),
            levels: (1..=9).collect(),
            shuffles: Shuffle::ALL.to_vec(),
            repeats: 3,
            slow_run: Duration::from_millis(200),
        }
    }
}

impl GridSpec {
    /// The settings of the grid, in codec, level, shuffle order. Byte-shuffle is left
    /// out for one-byte elements, where it is the same as no shuffle.
    pub fn points(&self, elem_size: usize) -> Vec<CompressOptions> {
        let mut out = Vec::new();
        for &codec in &self.codecs {
            for &level in &self.levels {
                for &shuffle in &self.shuffles {
                    if shuffle == Shuffle::Byte && elem_size <= 1 {
                        continue;
                    }
                    out.push(CompressOptions {
                        codec,
                        level,
                        shuffle,
                    });
                }
            }
        }
        out
    }
}

/// Why a grid run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Blosc failed on a setting.
    #[error("{options}: {source}")]
    Codec {
        /// The setting that failed.
        options: CompressOptions,
        /// What Blosc reported.
        source: CodecError,
    },
    /// A round trip did not give the original bytes back.
    #[error("{options}: decompressed bytes differ from the original")]
    NotBitExact {
        /// The setting that failed.
        options: CompressOptions,
    },
}

/// One setting on one tensor, with its estimated end-to-end time on each link.
#[derive(Debug, Clone, Serialize)]
pub struct PointResult {
    /// `codec:level:shuffle`, or `store`.
    pub setting: String,
    /// Uncompressed over compressed bytes.
    pub ratio: f64,
    /// Compression speed, MB/s of uncompressed data (null when storing).
    pub compress_mbs: Option<f64>,
    /// Decompression speed, MB/s of uncompressed data (null when storing).
    pub decompress_mbs: Option<f64>,
    /// Compressed bytes.
    pub compressed_bytes: usize,
    /// Estimated time of the pipelined transfer (compress, link and decompress
    /// overlapping chunk by chunk; see [`Objective`]), ms, one per link.
    pub end_to_end_ms: Vec<f64>,
    /// The raw figures the speeds and times above come from.
    #[serde(skip)]
    pub measurement: Measurement,
}

/// For one link: the best grid point and the tuner's pick.
#[derive(Debug, Clone, Serialize)]
pub struct LinkResult {
    /// Link bandwidth, Mbit/s.
    pub link_mbps: f64,
    /// The grid point with the lowest end-to-end time.
    pub best: String,
    /// Its end-to-end time, ms.
    pub best_ms: f64,
    /// The tuner's pick.
    pub tuner: String,
    /// The pick's end-to-end time as measured by the grid, ms.
    pub tuner_ms: f64,
    /// `tuner_ms / best_ms`: 1.0 is the best the grid found.
    pub tuner_over_best: f64,
    /// Thread CPU time the tuner's search took, ms.
    pub search_ms: f64,
}

/// Everything measured on one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorResult {
    /// File or synthetic name.
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Bytes of data.
    pub bytes: usize,
    /// Every grid point, `store` first.
    pub grid: Vec<PointResult>,
    /// One per link.
    pub links: Vec<LinkResult>,
}

/// Runs the grid and the tuner on `tensor` for every link in `links_mbps`; `progress`
/// is called after each grid point with (done, total, setting).
pub fn run(
    tensor: &Tensor,
    spec: &GridSpec,
    links_mbps: &[f64],
    tuner: &TunerConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<TensorResult, BenchError> {
    let points = spec.points(tensor.elem_size);
    let mut measured = vec![Measurement::store(tensor.data.len())];
    let mut compressed = Vec::new();
    let mut restored = vec![1u8; tensor.data.len()];
    for (i, &options) in points.iter().enumerate() {
        measured.push(measure(
            tensor,
            options,
            spec,
            &mut compressed,
            &mut restored,
        )?);
        progress(i + 1, points.len(), &options.to_string());
    }
    let grid: Vec<PointResult> = measured
        .iter()
        .map(|m| point_result(m, tensor.data.len(), links_mbps, &tuner.objective()))
        .collect();

    let mut links = Vec::new();
    for (li, &link_mbps) in links_mbps.iter().enumerate() {
        let best = grid
            .iter()
            .min_by(|a, b| a.end_to_end_ms[li].total_cmp(&b.end_to_end_ms[li]))
            .expect("the grid always holds the store point");
        let (pick, search_ms) = tuner_pick(tuner, link_mbps, tensor)?;
        let pick_setting = setting_name(pick);
        let tuner_ms = match grid.iter().find(|p| p.setting == pick_setting) {
            Some(p) => p.end_to_end_ms[li],
            // The grid may leave out the tuner's setting: measure it the same way.
            None => {
                let options = pick.expect("store is always in the grid");
                let m = measure(tensor, options, spec, &mut compressed, &mut restored)?;
                let link = mbps_to_bytes_per_sec(link_mbps);
                tuner.objective().secs(&m, tensor.data.len(), link) * 1e3
            }
        };
        links.push(LinkResult {
            link_mbps,
            best: best.setting.clone(),
            best_ms: best.end_to_end_ms[li],
            tuner: pick_setting,
            tuner_ms,
            tuner_over_best: tuner_ms / best.end_to_end_ms[li],
            search_ms,
        });
    }
    Ok(TensorResult {
        name: tensor.name.clone(),
        dtype: tensor.dtype.to_string(),
        shape: tensor.shape.clone(),
        bytes: tensor.data.len(),
        grid,
        links,
    })
}

/// What the sidecar's tuner would pick for this tensor over a link of `link_mbps`, and
/// the thread CPU time of its search.
fn tuner_pick(
    config: &TunerConfig,
    link_mbps: f64,
    tensor: &Tensor,
) -> Result<(Option<CompressOptions>, f64), BenchError> {
    if tensor.data.len() < config.min_size {
        return Ok((None, 0.0));
    }
    let start = Stopwatch::start();
    let search = Tuner::new(TunerConfig {
        background: false,
        ..*config
    })
    .search(&tensor.data, tensor.elem_size)
    .map_err(|source| BenchError::Codec {
        options: CompressOptions::default(),
        source,
    })?;
    let search_ms = start.elapsed().as_secs_f64() * 1e3;
    let pick = search.evaluate(mbps_to_bytes_per_sec(link_mbps), &config.objective());
    Ok((pick.pick, search_ms))
}

/// `codec:level:shuffle`, or `store`.
pub fn setting_name(options: Option<CompressOptions>) -> String {
    options.map_or_else(|| "store".to_owned(), |o| o.to_string())
}

fn point_result(
    m: &Measurement,
    len: usize,
    links_mbps: &[f64],
    objective: &Objective,
) -> PointResult {
    let stored = m.options.is_none();
    PointResult {
        setting: setting_name(m.options),
        ratio: m.ratio(),
        compress_mbs: (!stored).then(|| m.compress_mbs()),
        decompress_mbs: (!stored).then(|| m.decompress_mbs()),
        compressed_bytes: m.compressed_len,
        end_to_end_ms: links_mbps
            .iter()
            .map(|&l| objective.secs(m, len, mbps_to_bytes_per_sec(l)) * 1e3)
            .collect(),
        measurement: *m,
    }
}

/// Compresses and decompresses the whole tensor `spec.repeats` times; the fastest run
/// of each counts. The first round trip is checked bit for bit.
fn measure(
    tensor: &Tensor,
    options: CompressOptions,
    spec: &GridSpec,
    compressed: &mut Vec<u8>,
    restored: &mut [u8],
) -> Result<Measurement, BenchError> {
    let codec_err = |source| BenchError::Codec { options, source };
    let (mut best_c, mut best_d) = (Duration::MAX, Duration::MAX);
    for run in 0..spec.repeats.max(1) {
        compressed.clear();
        let start = Stopwatch::start();
        codec::compress(&tensor.data, tensor.elem_size, options, compressed).map_err(codec_err)?;
        let c = start.elapsed();
        let start = Stopwatch::start();
        codec::decompress(compressed, restored).map_err(codec_err)?;
        let d = start.elapsed();
        if run == 0 && restored != tensor.data.as_slice() {
            return Err(BenchError::NotBitExact { options });
        }
        best_c = best_c.min(c);
        best_d = best_d.min(d);
        if c + d > spec.slow_run {
            break;
        }
    }
    Ok(Measurement {
        options: Some(options),
        input_len: tensor.data.len(),
        compressed_len: compressed.len(),
        compress: best_c,
        decompress: best_d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_shuffle_is_left_out_for_one_byte_elements() {
        let spec = GridSpec {
            codecs: vec![Codec::Lz4, Codec::Zstd],
            levels: vec![1, 9],
            ..GridSpec::default()
        };
        assert_eq!(spec.points(4).len(), 2 * 2 * 3);
        let bytes = spec.points(1);
        assert_eq!(bytes.len(), 2 * 2 * 2);
        assert!(bytes.iter().all(|o| o.shuffle != Shuffle::Byte));
    }

    #[test]
    fn runs_the_grid_and_the_tuner_on_a_tensor() {
        let tensor = synthetic::segmentation_mask();
        let spec = GridSpec {
            codecs: vec![Codec::BloscLz],
            levels: vec![5],
            shuffles: vec![Shuffle::None],
            repeats: 1,
            ..GridSpec::default()
        };
        let mut calls = 0;
        let r = run(
            &tensor,
            &spec,
            &[100.0],
            &TunerConfig::default(),
            &mut |done, total, _| {
                calls += 1;
                assert_eq!((done, total), (1, 1));
            },
        )
        .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(r.grid.len(), 2);
        assert_eq!(
            (r.grid[0].setting.as_str(), r.grid[0].ratio),
            ("store", 1.0)
        );
        assert_eq!(r.grid[1].setting, "blosclz:5:none");
        assert!(r.grid[1].ratio > 10.0);
        assert_eq!(r.links.len(), 1);
        assert_ne!(r.links[0].tuner, "store");
    }
}
