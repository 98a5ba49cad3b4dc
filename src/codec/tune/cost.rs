//! The cost model the tuner minimises: compress + bytes over the link + decompress.

use std::time::Duration;

use crate::CompressOptions;

/// Seconds to send `bytes` over a link of `link_mbps` megabits (10^6 bits) per second.
pub fn transfer_secs(bytes: usize, link_mbps: f64) -> f64 {
    bytes as f64 * 8.0 / (link_mbps * 1e6)
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

    /// Estimated seconds to compress, send and decompress `len` bytes of data like the
    /// measured input, over a link of `link_mbps`: sizes and times scale linearly.
    pub fn end_to_end_secs(&self, len: usize, link_mbps: f64) -> f64 {
        if self.input_len == 0 {
            return transfer_secs(len, link_mbps);
        }
        let scale = len as f64 / self.input_len as f64;
        let cpu = (self.compress + self.decompress).as_secs_f64();
        scale * (cpu + transfer_secs(self.compressed_len, link_mbps))
    }

    /// Estimated seconds spent in Blosc alone for `len` bytes (no transfer).
    pub fn cpu_secs(&self, len: usize) -> f64 {
        if self.input_len == 0 {
            return 0.0;
        }
        len as f64 / self.input_len as f64 * (self.compress + self.decompress).as_secs_f64()
    }
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

    #[test]
    fn storing_costs_only_the_transfer() {
        let m = Measurement::store(1_000_000);
        assert_eq!(m.ratio(), 1.0);
        // 8 Mbit over 100 Mbit/s.
        assert!((m.end_to_end_secs(1_000_000, 100.0) - 0.08).abs() < 1e-12);
    }

    #[test]
    fn a_sample_scales_to_the_whole_tensor() {
        let m = Measurement {
            options: Some(CompressOptions::default()),
            input_len: 1000,
            compressed_len: 250,
            compress: Duration::from_micros(10),
            decompress: Duration::from_micros(5),
        };
        assert_eq!(m.ratio(), 4.0);
        // 10x the sample: 150 us of CPU plus 2500 bytes at 1 Gbit/s (20 us).
        let secs = m.end_to_end_secs(10_000, 1000.0);
        assert!((secs - 170e-6).abs() < 1e-12, "{secs}");
        assert!((m.compress_mbs() - 100.0).abs() < 1e-9);
    }
}
