//! The cost model the tuner minimises: the time of a pipelined transfer, where
//! compression, the link and decompression overlap chunk by chunk.
//!
//! With the tensor cut into chunks, each stage works on one chunk while the next stage
//! works on the previous one. The whole transfer then takes as long as the slowest stage
//! needs for the whole tensor, plus the time the first chunk spends in the other stages
//! before the slowest one starts on it (fill) and the last chunk after it (drain); both
//! add up to one chunk through the other stages. A tensor of one chunk is the plain
//! sum of the three stages.
//!
//! Measurements are independent of the link (ratio and seconds per byte); the link rate
//! comes in only when a setting is judged, so a change of the link is followed without a
//! new search.

use std::time::Duration;

use crate::CompressOptions;

/// Bytes per second of a link of `mbps` megabits (10^6 bits) per second.
pub fn mbps_to_bytes_per_sec(mbps: f64) -> f64 {
    mbps * 1e6 / 8.0
}

/// One setting measured on some input: sizes and times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// The setting measured; `None` is storing the bytes as they are.
    pub options: Option<CompressOptions>,
    /// Bytes compressed.
    pub input_len: usize,
    /// Bytes Blosc produced (equal to `input_len` when stored).
    pub compressed_len: usize,
    /// Time spent compressing `input_len` bytes.
    pub compress: Duration,
    /// Time spent decompressing them again.
    pub decompress: Duration,
}

impl Measurement {
    /// Storing `len` bytes: nothing to compute, every byte crosses the link.
    pub fn store(len: usize) -> Self {
        Self {
            options: None,
            input_len: len,
            compressed_len: len,
            compress: Duration::ZERO,
            decompress: Duration::ZERO,
        }
    }

    /// Uncompressed over compressed size (1.0 for empty input).
    pub fn ratio(&self) -> f64 {
        if self.compressed_len == 0 {
            1.0
        } else {
            self.input_len as f64 / self.compressed_len as f64
        }
    }

    /// Compression speed in MB/s (10^6 bytes) of uncompressed data.
    pub fn compress_mbs(&self) -> f64 {
        mbs(self.input_len, self.compress)
    }

    /// Decompression speed in MB/s (10^6 bytes) of uncompressed data.
    pub fn decompress_mbs(&self) -> f64 {
        mbs(self.input_len, self.decompress)
    }

    /// Seconds to compress, send over a link of `link_bytes_per_sec` and decompress,
    /// one after the other, one uncompressed byte of data like the measured input.
    fn stages_per_byte(&self, link_bytes_per_sec: f64) -> [f64; 3] {
        if self.input_len == 0 {
            return [0.0, 1.0 / link_bytes_per_sec, 0.0];
        }
        let n = self.input_len as f64;
        [
            self.compress.as_secs_f64() / n,
            self.compressed_len as f64 / n / link_bytes_per_sec,
            self.decompress.as_secs_f64() / n,
        ]
    }

    /// Estimated seconds spent in Blosc alone for `len` bytes (no transfer).
    pub fn cpu_secs(&self, len: usize) -> f64 {
        if self.input_len == 0 {
            return 0.0;
        }
        len as f64 / self.input_len as f64 * (self.compress + self.decompress).as_secs_f64()
    }

    /// Estimated seconds to compress `len` bytes of data like the measured input.
    pub fn compress_secs(&self, len: usize) -> f64 {
        self.stages_per_byte(1.0)[0] * len as f64
    }

    /// Estimated seconds to decompress `len` bytes of data like the measured input.
    pub fn decompress_secs(&self, len: usize) -> f64 {
        self.stages_per_byte(1.0)[2] * len as f64
    }
}

/// The objective: pipelined transfer time, and how much compression must win by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// Bytes per pipeline chunk (the sidecar's segment size).
    pub chunk: usize,
    /// Compression must beat storing by this fraction of the store time, so that a
    /// marginal gain does not cost CPU on both sides.
    pub min_gain: f64,
}

impl Objective {
    /// Seconds of a pipelined transfer of `len` bytes whose three stages (compress, link,
    /// decompress) take `stages` seconds for the whole tensor.
    pub fn pipelined_secs(&self, len: usize, stages: [f64; 3]) -> f64 {
        let slowest = stages.iter().copied().fold(0.0, f64::max);
        let sum: f64 = stages.iter().sum();
        let first_chunk = if len == 0 {
            1.0
        } else {
            len.min(self.chunk.max(1)) as f64 / len as f64
        };
        slowest + first_chunk * (sum - slowest)
    }

    /// Estimated seconds to move `len` bytes of data like `m`'s input with `m`'s setting
    /// over a link of `link_bytes_per_sec`.
    pub fn secs(&self, m: &Measurement, len: usize, link_bytes_per_sec: f64) -> f64 {
        let n = len as f64;
        let stages = m.stages_per_byte(link_bytes_per_sec).map(|s| s * n);
        self.pipelined_secs(len, stages)
    }

    /// Seconds to send `len` bytes as they are.
    pub fn store_secs(&self, len: usize, link_bytes_per_sec: f64) -> f64 {
        len as f64 / link_bytes_per_sec
    }

    /// The best of `candidates` for `len` bytes over a link of `link_bytes_per_sec`:
    /// storing unless a setting beats it by [`Objective::min_gain`].
    pub fn best(
        &self,
        candidates: &[Measurement],
        len: usize,
        link_bytes_per_sec: f64,
    ) -> Evaluation {
        let store_secs = self.store_secs(len, link_bytes_per_sec);
        // Stated as a handicap on storing's rivals.
        let threshold = store_secs * (1.0 - self.min_gain);
        let mut best = Evaluation {
            pick: None,
            estimate_secs: store_secs,
            store_secs,
            ratio: 1.0,
            cpu_secs: 0.0,
        };
        let mut best_secs = threshold;
        for m in candidates.iter().filter(|m| m.options.is_some()) {
            let secs = self.secs(m, len, link_bytes_per_sec);
            if secs < best_secs {
                best_secs = secs;
                best = Evaluation {
                    pick: m.options,
                    estimate_secs: secs,
                    store_secs,
                    ratio: m.ratio(),
                    cpu_secs: m.cpu_secs(len),
                };
            }
        }
        best
    }
}

/// A setting judged for one tensor and link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The winner, `None` when storing is best.
    pub pick: Option<CompressOptions>,
    /// Its estimated seconds for the whole tensor.
    pub estimate_secs: f64,
    /// Seconds to send the whole tensor as it is.
    pub store_secs: f64,
    /// The winner's ratio on the sample (1.0 when storing).
    pub ratio: f64,
    /// Estimated seconds of Blosc work (compress + decompress) of the winner (0 when
    /// storing).
    pub cpu_secs: f64,
}

fn mbs(len: usize, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 {
        len as f64 / secs / 1e6
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECTIVE: Objective = Objective {
        chunk: 1000,
        min_gain: 0.0,
    };

    fn measured(compressed_len: usize, compress_us: u64, decompress_us: u64) -> Measurement {
        Measurement {
            options: Some(CompressOptions::default()),
            input_len: 1000,
            compressed_len,
            compress: Duration::from_micros(compress_us),
            decompress: Duration::from_micros(decompress_us),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn storing_costs_only_the_transfer() {
        let m = Measurement::store(1_000_000);
        assert_eq!(m.ratio(), 1.0);
        // 8 Mbit over 100 Mbit/s.
        let link = mbps_to_bytes_per_sec(100.0);
        assert!(close(OBJECTIVE.secs(&m, 1_000_000, link), 0.08));
        assert!(close(OBJECTIVE.store_secs(1_000_000, link), 0.08));
    }

    #[test]
    fn one_chunk_pays_every_stage_in_turn() {
        let m = measured(250, 10, 5);
        assert_eq!(m.ratio(), 4.0);
        // 1000 bytes, one chunk: 10 us + 250 bytes at 1 MB/s (250 us) + 5 us.
        let secs = OBJECTIVE.secs(&m, 1000, 1e6);
        assert!(close(secs, 265e-6), "{secs}");
        assert!((m.compress_mbs() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn many_chunks_pay_the_slowest_stage_and_one_chunk_of_the_others() {
        let m = measured(250, 10, 5);
        // 100 chunks: the link takes 25 ms for the whole; the first chunk is compressed
        // before it and the last decompressed after it (15 us).
        let secs = OBJECTIVE.secs(&m, 100_000, 1e6);
        assert!(close(secs, 25e-3 + 15e-6), "{secs}");
        // On a link 100 times faster, compression is the slowest stage (1 ms).
        let secs = OBJECTIVE.secs(&m, 100_000, 1e8);
        assert!(close(secs, 1e-3 + 2.5e-6 + 5e-6), "{secs}");
    }

    #[test]
    fn the_best_setting_depends_on_the_link() {
        // A strong slow setting and a weak fast one.
        let strong = measured(100, 50, 10);
        let fast = Measurement {
            options: Some(CompressOptions {
                level: 1,
                ..CompressOptions::default()
            }),
            ..measured(500, 2, 1)
        };
        let candidates = [strong, fast];
        let len = 1_000_000;
        // 1 MB/s: the link dominates and the ratio counts.
        assert_eq!(OBJECTIVE.best(&candidates, len, 1e6).pick, strong.options);
        // 100 MB/s: strong needs 50 ms to compress, fast 2 ms, and 5 ms on the link.
        assert_eq!(OBJECTIVE.best(&candidates, len, 1e8).pick, fast.options);
        // 10 GB/s: storing takes 0.1 ms, less than either.
        let e = OBJECTIVE.best(&candidates, len, 1e10);
        assert_eq!((e.pick, e.ratio, e.cpu_secs), (None, 1.0, 0.0));
        // A setting must win by the margin.
        let demanding = Objective {
            min_gain: 0.99,
            ..OBJECTIVE
        };
        assert_eq!(demanding.best(&candidates, len, 1e8).pick, None);
    }
}
