//! Trial compression of a sample: which setting minimises the estimated end-to-end time.
//!
//! The search is pruned so that it stays cheap: a probe with lz4 tries each shuffle,
//! then short ladders of codec levels run with the shuffle that did best end to end and
//! the one that shrank the data most. A ladder stops when a level's CPU time alone, or
//! the next level's likely CPU time, exceeds the best total found, or when a level
//! neither shrinks the data 1% more nor is faster end to end.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

use super::clock::Stopwatch;
use super::cost::Measurement;
use crate::codec::{self, Codec, CodecError, CompressOptions, Shuffle};

/// Ladders tried with the probed shuffles, each in order of increasing cost.
/// When the first level of a ladder marked `true` already costs more CPU than the best
/// total, the ladders after it (slower codecs) are skipped.
const LADDERS: [(Codec, &[u8], bool); 4] = [
    (Codec::Lz4, &[1, 9], false),
    (Codec::BloscLz, &[1, 5, 7, 9], false),
    (Codec::Zstd, &[1, 3, 5, 7, 9], true),
    (Codec::Zlib, &[1, 3, 5], true),
];
/// The probe that chooses the shuffle: lz4 is fast and its ratio follows the data's
/// structure the way the other codecs' does.
const PROBE: (Codec, u8) = (Codec::Lz4, 5);
/// A trial run longer than this is not repeated.
const LONG_RUN: Duration = Duration::from_millis(2);
/// A level that improves the ratio by less than this over the previous one, and is no
/// faster end to end, ends its ladder.
const MIN_LEVEL_GAIN: f64 = 1.01;

/// Where to sample and how to judge.
#[derive(Debug, Clone, Copy)]
pub struct SearchParams {
    /// Link bandwidth in Mbit/s.
    pub link_mbps: f64,
    /// Bytes per sample block.
    pub block: usize,
    /// Sample blocks spread evenly over the tensor.
    pub blocks: usize,
    /// Compression must beat storing by this fraction of the store time.
    pub min_gain: f64,
    /// Runs per trial; the fastest counts, so that a run the scheduler interrupted does
    /// not disqualify a setting.
    pub runs: usize,
}

/// The outcome of one search.
#[derive(Debug, Clone)]
pub struct Search {
    /// The winner, `None` when storing is best.
    pub pick: Option<CompressOptions>,
    /// Estimated end-to-end seconds of the winner for the whole tensor.
    pub estimate_secs: f64,
    /// Estimated seconds of Blosc work (compress + decompress) of the winner for the
    /// whole tensor (0 when storing).
    pub cpu_secs: f64,
    /// Seconds to send the whole tensor uncompressed.
    pub store_secs: f64,
    /// The winner's ratio on the sample (1.0 when storing).
    pub ratio: f64,
    /// Every trial run, in order.
    pub trials: Vec<Measurement>,
    /// Bytes in the sample.
    pub sample_len: usize,
}

/// Byte ranges of the sample: `blocks` blocks of `block` bytes (element-aligned) spread
/// evenly from the start to the end of `len` bytes, or the whole range when that is not
/// larger than the sample.
pub fn sample_ranges(
    len: usize,
    elem_size: usize,
    block: usize,
    blocks: usize,
) -> Vec<Range<usize>> {
    let elem = elem_size.max(1);
    let block = (block.max(elem) / elem) * elem;
    let blocks = blocks.max(1);
    if len <= block.saturating_mul(blocks) {
        return std::iter::once(0..len).collect();
    }
    let span = len - block;
    (0..blocks)
        .map(|i| {
            let start = if blocks == 1 {
                0
            } else {
                span / (blocks - 1) * i
            };
            let start = start - start % elem;
            start..start + block
        })
        .collect()
}

/// Runs the pruned search on `data`.
pub fn search(data: &[u8], elem_size: usize, params: SearchParams) -> Result<Search, CodecError> {
    let ranges = sample_ranges(data.len(), elem_size, params.block, params.blocks);
    let sample_len: usize = ranges.iter().map(Range::len).sum();
    let mut bench = SampleBench::new(data, &ranges, elem_size, params.runs);
    let len = data.len();
    let store = Measurement::store(sample_len);
    let store_secs = store.end_to_end_secs(len, params.link_mbps);
    // Compression must win by `min_gain`: stated as a handicap on storing's rival.
    let threshold = store_secs * (1.0 - params.min_gain);
    let total = |m: &Measurement| m.end_to_end_secs(len, params.link_mbps);

    let mut trials = Vec::new();
    let mut best: Option<(Measurement, f64)> = None;
    let consider = |m: Measurement, best: &mut Option<(Measurement, f64)>| {
        let t = total(&m);
        if t < threshold && best.as_ref().is_none_or(|(_, b)| t < *b) {
            *best = Some((m, t));
        }
    };

    let shuffles: &[Shuffle] = if elem_size > 1 {
        &[Shuffle::Byte, Shuffle::Bit, Shuffle::None]
    } else {
        &[Shuffle::Bit, Shuffle::None]
    };
    // One untimed run first: the first Blosc calls of a process (or after a pause) pay
    // for fresh heap pages and cold code, which would count against the first probe.
    bench.run_once(CompressOptions {
        codec: PROBE.0,
        level: PROBE.1,
        shuffle: shuffles[0],
    })?;
    let mut probes = Vec::with_capacity(shuffles.len());
    for &shuffle in shuffles {
        let m = bench.run(CompressOptions {
            codec: PROBE.0,
            level: PROBE.1,
            shuffle,
        })?;
        trials.push(m);
        consider(m, &mut best);
        probes.push(m);
    }
    // The ladders run with the shuffle that did best end to end (on a fast link, the
    // cheapest filter that shrinks enough) and with the one that shrank most (on a slow
    // link, the ratio is what counts), once if they are the same.
    let by_total = probes.iter().min_by(|a, b| total(a).total_cmp(&total(b)));
    let by_ratio = probes.iter().min_by_key(|m| m.compressed_len);
    let mut ladder_shuffles: Vec<Shuffle> = [by_total, by_ratio]
        .into_iter()
        .flatten()
        .filter_map(|m| m.options.map(|o| o.shuffle))
        .collect();
    ladder_shuffles.dedup();

    for shuffle in ladder_shuffles {
        for (codec, levels, ends_ladders) in LADDERS {
            let mut previous: Option<Measurement> = None;
            // zstd is faster than zlib at every level: when even zstd's fastest level
            // costs more than the best total, zlib cannot win either.
            let mut too_slow_from_the_start = false;
            for (step, &level) in levels.iter().enumerate() {
                let m = bench.run(CompressOptions {
                    codec,
                    level,
                    shuffle,
                })?;
                trials.push(m);
                consider(m, &mut best);
                let bound = best.as_ref().map_or(store_secs, |(_, t)| *t);
                let cpu = m.cpu_secs(len);
                let no_gain = previous.is_some_and(|p| {
                    m.ratio() < p.ratio() * MIN_LEVEL_GAIN && total(&m) >= total(&p)
                });
                // Levels get slower roughly geometrically: the next one likely costs at
                // least this level's time times the last step's growth.
                let next_cpu = previous.map_or(cpu, |p| cpu * (cpu / p.cpu_secs(len)).max(1.0));
                if cpu >= bound || next_cpu >= bound || no_gain {
                    too_slow_from_the_start = ends_ladders && step == 0 && cpu >= bound;
                    break;
                }
                previous = Some(m);
            }
            if too_slow_from_the_start {
                break;
            }
        }
    }

    Ok(match best {
        Some((m, t)) => Search {
            pick: m.options,
            estimate_secs: t,
            cpu_secs: m.cpu_secs(len),
            store_secs,
            ratio: m.ratio(),
            trials,
            sample_len,
        },
        None => Search {
            pick: None,
            estimate_secs: store_secs,
            cpu_secs: 0.0,
            store_secs,
            ratio: 1.0,
            trials,
            sample_len,
        },
    })
}

/// Compresses and decompresses the sample with one setting at a time, reusing its
/// buffers.
///
/// The sample blocks are joined into one buffer and compressed as one Blosc chunk: Blosc
/// picks its internal block size from the level and the chunk's length (up to 1 MiB), so
/// a sample compressed piece by piece would be judged with smaller blocks, and lower
/// ratios, than the whole tensor gets.
struct SampleBench<'a> {
    sample: Cow<'a, [u8]>,
    elem_size: usize,
    runs: usize,
    compressed: Vec<u8>,
    restored: Vec<u8>,
}

impl<'a> SampleBench<'a> {
    fn new(data: &'a [u8], ranges: &[Range<usize>], elem_size: usize, runs: usize) -> Self {
        let sample = match ranges {
            [one] => Cow::Borrowed(&data[one.clone()]),
            many => Cow::Owned(
                many.iter()
                    .flat_map(|r| &data[r.clone()])
                    .copied()
                    .collect(),
            ),
        };
        // Both buffers are written once here, so that no trial pays for page faults.
        let mut compressed = vec![1u8; codec::compressed_bound(sample.len(), elem_size)];
        compressed.clear();
        let restored = vec![1u8; sample.len()];
        Self {
            sample,
            elem_size,
            runs: runs.max(1),
            compressed,
            restored,
        }
    }

    fn run(&mut self, options: CompressOptions) -> Result<Measurement, CodecError> {
        let (mut compress, mut decompress) = (Duration::MAX, Duration::MAX);
        for _ in 0..self.runs {
            let (c, d) = self.run_once(options)?;
            compress = compress.min(c);
            decompress = decompress.min(d);
            // A long run is rarely distorted much by one interruption; repeating it
            // would make slow settings expensive to try.
            if c + d > LONG_RUN {
                break;
            }
        }
        Ok(Measurement {
            options: Some(options),
            input_len: self.sample.len(),
            compressed_len: self.compressed.len(),
            compress,
            decompress: decompress.max(Duration::from_nanos(1)),
        })
    }

    fn run_once(&mut self, options: CompressOptions) -> Result<(Duration, Duration), CodecError> {
        self.compressed.clear();
        let start = Stopwatch::start();
        codec::compress(&self.sample, self.elem_size, options, &mut self.compressed)?;
        let compress = start.elapsed();
        let start = Stopwatch::start();
        codec::decompress(&self.compressed, &mut self.restored)?;
        Ok((compress, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_spread_and_aligned() {
        let r = sample_ranges(1_000_003, 4, 1000, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], 0..1000);
        assert!(
            r.iter()
                .all(|r| r.start % 4 == 0 && r.len() == 1000 && r.end <= 1_000_003)
        );
        assert!(r[3].end > 999_000);
        assert_eq!(
            sample_ranges(3000, 4, 1000, 4),
            std::iter::once(0..3000).collect::<Vec<_>>()
        );
        assert_eq!(
            sample_ranges(0, 8, 1000, 4),
            std::iter::once(0..0).collect::<Vec<_>>()
        );
        assert_eq!(
            sample_ranges(10_000, 1, 1000, 1),
            std::iter::once(0..1000).collect::<Vec<_>>()
        );
    }
}
