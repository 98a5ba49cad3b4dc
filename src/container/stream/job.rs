//! The CPU-heavy part of restoring a record, packaged to run on a blocking pool.

use bytes::Bytes;

use crate::codec;
use crate::container::ContainerError;
use crate::container::v1::Layout;

/// Restores the bytes of one verified record: decompressing a Blosc segment, or
/// reconstructing a whole version-1 container. Owns what it needs (`Send + 'static`).
#[derive(Debug)]
pub struct RestoreJob {
    work: Work,
}

#[derive(Debug)]
enum Work {
    /// One Blosc chunk whose header declares `len` bytes.
    Blosc { chunk: Bytes, len: usize },
    /// A version-1 container, with the layout its parse found.
    Whole { container: Bytes, layout: Layout },
}

impl RestoreJob {
    pub(super) fn blosc(chunk: Bytes, len: usize) -> Self {
        Self {
            work: Work::Blosc { chunk, len },
        }
    }

    pub(super) fn whole(container: Bytes, layout: Layout) -> Self {
        Self {
            work: Work::Whole { container, layout },
        }
    }

    /// Bytes [`RestoreJob::run`] returns on success.
    pub fn restored_len(&self) -> usize {
        match &self.work {
            Work::Blosc { len, .. } => *len,
            Work::Whole { layout, .. } => layout.message_len(),
        }
    }

    /// The compressor a Blosc chunk's header names (`blosclz`, `lz4` for lz4 and lz4hc
    /// alike, `snappy`, `zlib`, `zstd`), or `memcpy` when Blosc stored the data as it
    /// was; `None` for a version-1 container or a code Blosc does not define. Read from
    /// the header as it came, for traces: nothing is trusted or decided on it.
    pub fn compressor(&self) -> Option<&'static str> {
        let Work::Blosc { chunk, .. } = &self.work else {
            return None;
        };
        // Byte 2 holds the flags: bit 1 "stored as is", bits 5 to 7 the format code.
        let flags = *chunk.get(2)?;
        if flags & 0x02 != 0 {
            return Some("memcpy");
        }
        match flags >> 5 {
            0 => Some("blosclz"),
            1 => Some("lz4"),
            2 => Some("snappy"),
            3 => Some("zlib"),
            4 => Some("zstd"),
            _ => None,
        }
    }

    /// Decompresses: exactly [`RestoreJob::restored_len`] bytes, or data loss when
    /// c-blosc finds the compressed bytes corrupt.
    pub fn run(self) -> Result<Bytes, ContainerError> {
        match self.work {
            Work::Blosc { chunk, len } => {
                let mut out = Vec::with_capacity(len);
                codec::decompress_append(&chunk, len, &mut out)
                    .map_err(|source| ContainerError::SegmentData { source })?;
                Ok(out.into())
            }
            Work::Whole { container, layout } => Ok(layout.view(&container).reconstruct()?.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_static<T: Send + 'static>() {}

    #[test]
    fn jobs_move_to_other_threads() {
        assert_send_static::<RestoreJob>();
    }

    #[test]
    fn the_compressor_is_read_from_the_chunk_header() {
        let ramp: Vec<u8> = (0..4096u32).flat_map(u32::to_le_bytes).collect();
        for (setting, name) in [("lz4:5:byte", "lz4"), ("zstd:1:byte", "zstd")] {
            let mut chunk = Vec::new();
            codec::compress(&ramp, 4, setting.parse().unwrap(), &mut chunk).unwrap();
            let job = RestoreJob::blosc(chunk.into(), ramp.len());
            assert_eq!(job.compressor(), Some(name), "{setting}");
        }
        // Noise does not compress: Blosc stores it as it is.
        let noise = crate::bench::synthetic::random_bytes(4096, 7);
        let mut chunk = Vec::new();
        codec::compress(&noise, 1, "lz4:5:none".parse().unwrap(), &mut chunk).unwrap();
        let job = RestoreJob::blosc(chunk.into(), noise.len());
        assert_eq!(job.compressor(), Some("memcpy"));
    }
}
