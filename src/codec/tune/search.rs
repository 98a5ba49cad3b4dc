//! Trial compression of a sample: what each promising setting costs on this data.
//!
//! The result does not depend on the link: it is a set of measured settings (ratio,
//! compress and decompress time per byte), judged against the link rate in effect each
//! time a tensor is sent (see [`Objective`](super::cost::Objective)).
//!
//! The search is pruned so that it stays cheap: a probe with lz4 tries each shuffle; the
//! level ladders of every codec run with the shuffle that shrank the data most, and
//! those of the fast codecs (lz4, blosclz) also with the cheapest shuffle that shrinks
//! at all (on a fast link, only cheap settings can keep up). A ladder stops when a level
//! compresses or decompresses slower than the slowest link the tuner serves (such a
//! setting can never beat storing there, whatever its ratio), when the next level
//! likely would (levels get slower geometrically), or when a level does not shrink the
//! data 1% more than the previous one. Only the settings no other beats in ratio,
//! compress time and decompress time together are kept.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

use super::clock::Stopwatch;
use super::cost::{Evaluation, Measurement, Objective};
use crate::codec::{self, Codec, CodecError, CompressOptions, Shuffle};

/// Ladders tried, each in order of increasing cost, and whether they only run with the
/// shuffle that shrank the data most. When the first level of such a ladder is already
/// too slow, the ladders after it (slower codecs) are skipped.
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
/// A level that improves the ratio by less than this over the previous one ends its
/// ladder.
const MIN_LEVEL_GAIN: f64 = 1.01;
/// A shuffle whose probe shrinks the data less than this is not worth a ladder of its
/// own for speed.
const MIN_SHRINK: f64 = 1.05;

/// Where to sample and how far to search.
#[derive(Debug, Clone, Copy)]
pub struct SearchParams {
    /// Bytes per sample block.
    pub block: usize,
    /// Sample blocks spread evenly over the tensor.
    pub blocks: usize,
    /// Runs per trial; the fastest counts, so that a run the scheduler interrupted does
    /// not disqualify a setting.
    pub runs: usize,
    /// Bytes per second below which a setting is too slow to try stronger levels of
    /// (the slowest link served: compression slower than the link cannot beat storing).
    pub min_speed: f64,
}

/// The outcome of one search: link-independent measurements.
#[derive(Debug, Clone)]
pub struct Search {
    /// Bytes of the tensor the sample came from.
    pub len: usize,
    /// Bytes in the sample.
    pub sample_len: usize,
    /// Every trial run, in order.
    pub trials: Vec<Measurement>,
    /// The trials no other beats in ratio, compress and decompress time together, the
    /// fastest first: the settings worth judging against a link.
    pub candidates: Vec<Measurement>,
}

impl Search {
    /// The best setting for the searched tensor over a link of `link_bytes_per_sec`.
    pub fn evaluate(&self, link_bytes_per_sec: f64, objective: &Objective) -> Evaluation {
        objective.best(&self.candidates, self.len, link_bytes_per_sec)
    }
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

/// The sample of `data` as one buffer: the blocks of [`sample_ranges`] joined (at most
/// `block * blocks` bytes), borrowed when it is the whole of `data`.
///
/// The blocks are compressed as one Blosc chunk: Blosc picks its internal block size from
/// the level and the chunk's length (up to 1 MiB), so a sample compressed piece by piece
/// would be judged with smaller blocks, and lower ratios, than the whole tensor gets.
pub fn sample(data: &[u8], elem_size: usize, block: usize, blocks: usize) -> Cow<'_, [u8]> {
    match sample_ranges(data.len(), elem_size, block, blocks).as_slice() {
        [one] => Cow::Borrowed(&data[one.clone()]),
        many => Cow::Owned(
            many.iter()
                .flat_map(|r| &data[r.clone()])
                .copied()
                .collect(),
        ),
    }
}

/// Runs the pruned search on `data`.
pub fn search(data: &[u8], elem_size: usize, params: SearchParams) -> Result<Search, CodecError> {
    let sampled = sample(data, elem_size, params.block, params.blocks);
    search_sample(&sampled, data.len(), elem_size, params)
}

/// Runs the pruned search on a sample taken with [`sample`] from a tensor of `len` bytes.
pub fn search_sample(
    sample: &[u8],
    len: usize,
    elem_size: usize,
    params: SearchParams,
) -> Result<Search, CodecError> {
    let mut bench = SampleBench::new(sample, elem_size, params.runs);
    let too_slow = |m: &Measurement| {
        let min_mbs = params.min_speed / 1e6;
        m.compress_mbs() < min_mbs || m.decompress_mbs() < min_mbs
    };
    let mut trials = Vec::new();

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
        probes.push(m);
    }
    let shuffle_of = |m: &Measurement| m.options.map(|o| o.shuffle);
    let by_ratio = probes
        .iter()
        .min_by_key(|m| m.compressed_len)
        .and_then(shuffle_of);
    let by_speed = probes
        .iter()
        .filter(|m| m.ratio() >= MIN_SHRINK)
        .min_by(|a, b| a.cpu_secs(1).total_cmp(&b.cpu_secs(1)))
        .and_then(shuffle_of);
    let mut plans: Vec<(Shuffle, bool)> = by_ratio.map(|s| (s, true)).into_iter().collect();
    if let Some(fast) = by_speed.filter(|s| Some(*s) != by_ratio) {
        plans.push((fast, false));
    }

    for (shuffle, every_codec) in plans {
        for (codec, levels, strong) in LADDERS {
            if strong && !every_codec {
                continue;
            }
            let mut previous: Option<Measurement> = None;
            let mut slow_from_the_start = false;
            for (step, &level) in levels.iter().enumerate() {
                let m = bench.run(CompressOptions {
                    codec,
                    level,
                    shuffle,
                })?;
                trials.push(m);
                let no_gain = previous.is_some_and(|p| m.ratio() < p.ratio() * MIN_LEVEL_GAIN);
                // Levels get slower roughly geometrically: the next one likely takes at
                // least this level's time times the last step's growth.
                let growth = previous.map_or(1.0, |p| {
                    (m.compress.as_secs_f64() / p.compress.as_secs_f64().max(1e-9)).max(1.0)
                });
                let next_too_slow = params.min_speed > 0.0
                    && m.compress.as_secs_f64() * growth * params.min_speed > m.input_len as f64;
                if too_slow(&m) || next_too_slow || no_gain {
                    slow_from_the_start = strong && step == 0 && too_slow(&m);
                    break;
                }
                previous = Some(m);
            }
            if slow_from_the_start {
                break;
            }
        }
    }

    let candidates = frontier(&trials);
    Ok(Search {
        len,
        sample_len: sample.len(),
        trials,
        candidates,
    })
}

/// The trials no other trial beats in compressed size, compress time and decompress
/// time at once, fastest compression first.
fn frontier(trials: &[Measurement]) -> Vec<Measurement> {
    let beats = |a: &Measurement, b: &Measurement| {
        let no_worse = a.compressed_len <= b.compressed_len
            && a.compress <= b.compress
            && a.decompress <= b.decompress;
        let better = a.compressed_len < b.compressed_len
            || a.compress < b.compress
            || a.decompress < b.decompress;
        no_worse && better
    };
    let mut kept: Vec<Measurement> = trials
        .iter()
        .filter(|b| !trials.iter().any(|a| beats(a, b)))
        .copied()
        .collect();
    kept.sort_by_key(|m| m.compress);
    // Identical measurements of two settings: keep the first.
    kept.dedup_by(|b, a| {
        (a.compressed_len, a.compress, a.decompress) == (b.compressed_len, b.compress, b.decompress)
    });
    kept
}

/// Compresses and decompresses the sample with one setting at a time, reusing its
/// buffers.
struct SampleBench<'a> {
    sample: &'a [u8],
    elem_size: usize,
    runs: usize,
    compressed: Vec<u8>,
    restored: Vec<u8>,
}

impl<'a> SampleBench<'a> {
    fn new(sample: &'a [u8], elem_size: usize, runs: usize) -> Self {
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
        codec::compress(self.sample, self.elem_size, options, &mut self.compressed)?;
        let compress = start.elapsed();
        let start = Stopwatch::start();
        codec::decompress(&self.compressed, &mut self.restored)?;
        Ok((compress, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(
        level: u8,
        compressed_len: usize,
        compress_us: u64,
        decompress_us: u64,
    ) -> Measurement {
        Measurement {
            options: Some(CompressOptions {
                level,
                ..CompressOptions::default()
            }),
            input_len: 1000,
            compressed_len,
            compress: Duration::from_micros(compress_us),
            decompress: Duration::from_micros(decompress_us),
        }
    }

    #[test]
    fn keeps_only_the_settings_no_other_beats_on_every_count() {
        let fast = trial(1, 500, 2, 1);
        let strong = trial(9, 100, 50, 3);
        let beaten = trial(5, 600, 3, 1);
        let twin = trial(6, 500, 2, 1);
        let kept = frontier(&[strong, beaten, fast, twin]);
        assert_eq!(kept, vec![fast, strong]);
    }

    #[test]
    fn a_search_measures_settings_whatever_the_link() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i / 700) as u8).collect();
        let params = SearchParams {
            block: 64 * 1024,
            blocks: 2,
            runs: 1,
            min_speed: 1e6,
        };
        let s = search(&data, 1, params).unwrap();
        assert_eq!((s.len, s.sample_len), (300_000, 128 * 1024));
        assert!(!s.candidates.is_empty());
        assert!(s.candidates.iter().all(|c| s.trials.contains(c)));
        assert!(s.candidates.iter().any(|c| c.ratio() > 10.0));
        // Judged for a slow link it compresses; for an absurdly fast one it stores.
        let objective = Objective {
            chunk: 1 << 20,
            min_gain: 0.03,
        };
        assert!(s.evaluate(1e6, &objective).pick.is_some());
        assert_eq!(s.evaluate(1e15, &objective).pick, None);
    }

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
