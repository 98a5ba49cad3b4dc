//! The safe Blosc wrapper (the only module with `unsafe`) and the compression settings.

/// A Blosc compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    BloscLz,
    Lz4,
    Lz4Hc,
    Snappy,
    Zlib,
    Zstd,
}

/// Blosc's pre-filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shuffle {
    None,
    Byte,
    Bit,
}

/// One compression setting, passed per call (no global state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompressOptions {
    pub codec: Codec,
    /// 0 (store) to 9.
    pub level: u8,
    pub shuffle: Shuffle,
}

/// Failures of the Blosc wrapper.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {}

// Contract for the Blosc wrapper (implemented in `blosc.rs`):
//
// pub fn compress(src: &[u8], typesize: usize, opts: CompressOptions, dst: &mut Vec<u8>) -> Result<(), CodecError>
//     Appends to `dst` one or more Blosc chunks holding `src` (split when `src` is larger
//     than one chunk may hold).
// pub fn decompress(src: &[u8], dst: &mut [u8]) -> Result<(), CodecError>
//     Fills `dst` exactly from chunks produced by `compress`; validates every chunk header
//     and its declared size against `dst.len()` before touching memory.
