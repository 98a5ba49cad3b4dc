//! The safe Blosc wrapper (the only module with `unsafe`) and the compression settings.
//!
//! Settings are plain values passed per call; nothing here keeps global state, so every
//! function is safe to call from any number of threads at once.

mod blosc;
pub mod tune;

use std::fmt;
use std::str::FromStr;

use crate::error_kind::ErrorKind;

pub use blosc::{
    CHUNK_OVERHEAD, MAX_CHUNK_BYTES, compress, compressed_bound, decompress, decompress_append,
    decompressed_len,
};

/// A Blosc compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Blosc's own LZ77 variant: fast, modest ratios.
    BloscLz,
    /// LZ4: very fast compression and decompression.
    Lz4,
    /// LZ4 in high-compression mode: slower to compress, as fast to decompress.
    Lz4Hc,
    /// Snappy.
    Snappy,
    /// zlib (deflate): slow, good ratios.
    Zlib,
    /// Zstandard: the best ratios, fast decompression.
    Zstd,
}

impl Codec {
    /// Every codec, in the order of their wire ids.
    pub const ALL: [Codec; 6] = [
        Codec::BloscLz,
        Codec::Lz4,
        Codec::Lz4Hc,
        Codec::Snappy,
        Codec::Zlib,
        Codec::Zstd,
    ];

    /// The name c-blosc and the `BLOSCAR_CODEC` setting use.
    pub fn name(self) -> &'static str {
        match self {
            Codec::BloscLz => "blosclz",
            Codec::Lz4 => "lz4",
            Codec::Lz4Hc => "lz4hc",
            Codec::Snappy => "snappy",
            Codec::Zlib => "zlib",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec's id in the container's patch table (c-blosc's compressor code).
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The codec with this wire id.
    pub fn from_id(id: u8) -> Option<Codec> {
        Codec::ALL.get(usize::from(id)).copied()
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CodecError::UnknownCodec(s.to_owned()))
    }
}

/// Blosc's pre-filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shuffle {
    /// The bytes as they are.
    None,
    /// Byte shuffle: the k-th bytes of all elements side by side.
    Byte,
    /// Bit shuffle: the k-th bits of all elements side by side.
    Bit,
}

impl Shuffle {
    /// Every shuffle mode, in the order of their wire ids.
    pub const ALL: [Shuffle; 3] = [Shuffle::None, Shuffle::Byte, Shuffle::Bit];

    /// The name used in settings strings.
    pub fn name(self) -> &'static str {
        match self {
            Shuffle::None => "none",
            Shuffle::Byte => "byte",
            Shuffle::Bit => "bit",
        }
    }

    /// The mode's id in the container's patch table (c-blosc's `doshuffle` value).
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The mode with this wire id.
    pub fn from_id(id: u8) -> Option<Shuffle> {
        Shuffle::ALL.get(usize::from(id)).copied()
    }
}

impl fmt::Display for Shuffle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shuffle {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "noshuffle" => Ok(Shuffle::None),
            "byte" | "shuffle" => Ok(Shuffle::Byte),
            "bit" | "bitshuffle" => Ok(Shuffle::Bit),
            _ => Err(CodecError::UnknownShuffle(s.to_owned())),
        }
    }
}

/// One compression setting, passed per call (no global state).
///
/// Text form: `codec[:level[:shuffle]]`, e.g. `lz4:5:byte`; the level defaults to
/// [`CompressOptions::DEFAULT_LEVEL`] and the shuffle to `byte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompressOptions {
    /// The compressor.
    pub codec: Codec,
    /// 0 (store) to 9.
    pub level: u8,
    /// The pre-filter applied before the compressor.
    pub shuffle: Shuffle,
}

impl CompressOptions {
    /// The level used when a settings string names none.
    pub const DEFAULT_LEVEL: u8 = 5;
    /// The highest level Blosc knows.
    pub const MAX_LEVEL: u8 = 9;

    /// A setting; fails when `level` is above 9.
    pub fn new(codec: Codec, level: u8, shuffle: Shuffle) -> Result<Self, CodecError> {
        if level > Self::MAX_LEVEL {
            return Err(CodecError::InvalidLevel(level));
        }
        Ok(Self {
            codec,
            level,
            shuffle,
        })
    }

    /// The setting adapted to an element size: byte-shuffle cannot reorder anything in
    /// one-byte elements, so it becomes bit-shuffle there (the filter that helps masks
    /// and booleans).
    pub fn for_elem_size(self, elem_size: usize) -> Self {
        match (self.shuffle, elem_size) {
            (Shuffle::Byte, 0 | 1) => Self {
                shuffle: Shuffle::Bit,
                ..self
            },
            _ => self,
        }
    }
}

impl Default for CompressOptions {
    /// lz4, level 5, byte-shuffle: fast on both sides and good on numeric tensors.
    fn default() -> Self {
        Self {
            codec: Codec::Lz4,
            level: Self::DEFAULT_LEVEL,
            shuffle: Shuffle::Byte,
        }
    }
}

impl fmt::Display for CompressOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.codec, self.level, self.shuffle)
    }
}

impl FromStr for CompressOptions {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let codec = parts.next().unwrap_or_default().parse()?;
        let level = match parts.next() {
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| CodecError::InvalidOptions(s.to_owned()))?,
            None => Self::DEFAULT_LEVEL,
        };
        let shuffle = match parts.next() {
            Some(sh) => sh.parse()?,
            None => Shuffle::Byte,
        };
        if parts.next().is_some() {
            return Err(CodecError::InvalidOptions(s.to_owned()));
        }
        Self::new(codec, level, shuffle)
    }
}

/// Failures of the Blosc wrapper and of parsing settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A settings string named a codec Blosc does not have.
    #[error("unknown codec {0:?} (expected blosclz, lz4, lz4hc, snappy, zlib or zstd)")]
    UnknownCodec(String),
    /// A settings string named an unknown shuffle mode.
    #[error("unknown shuffle {0:?} (expected none, byte or bit)")]
    UnknownShuffle(String),
    /// A settings string is not of the form `codec[:level[:shuffle]]`.
    #[error("invalid compression setting {0:?} (expected codec[:level[:shuffle]])")]
    InvalidOptions(String),
    /// Blosc levels go from 0 to 9.
    #[error("compression level {0} is above 9")]
    InvalidLevel(u8),
    /// c-blosc reported an internal error while compressing.
    #[error("blosc compression failed (code {0})")]
    CompressFailed(i32),
    /// The bytes are not a Blosc chunk, or its header contradicts its length.
    #[error("invalid blosc chunk at byte {offset} of the compressed data")]
    InvalidChunk {
        /// Where the chunk starts in the compressed data.
        offset: usize,
    },
    /// The chunks declare a different decompressed size than the destination holds.
    #[error("blosc data holds {actual} bytes where {expected} were expected")]
    SizeMismatch {
        /// The destination's size.
        expected: usize,
        /// The total the chunks declare.
        actual: usize,
    },
    /// c-blosc found the compressed data corrupt while decompressing.
    #[error("blosc decompression failed (code {0})")]
    DecompressFailed(i32),
}

impl CodecError {
    /// How the failure maps to a gRPC status at the edge.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CodecError::UnknownCodec(_)
            | CodecError::UnknownShuffle(_)
            | CodecError::InvalidOptions(_)
            | CodecError::InvalidLevel(_) => ErrorKind::InvalidArgument,
            CodecError::CompressFailed(_) => ErrorKind::Internal,
            CodecError::InvalidChunk { .. }
            | CodecError::SizeMismatch { .. }
            | CodecError::DecompressFailed(_) => ErrorKind::DataLoss,
        }
    }
}
