//! The bloscar containers: how a message travels under `grpc-encoding: bloscar`.
//! See `docs/wire-format.md`.
//!
//! - [`v1`] (re-exported here): one buffer holding the whole message as a skeleton plus
//!   Blosc patches, under one checksum. Still read, so that an older outbound sidecar
//!   works with a newer inbound one.
//! - [`stream`]: version 2, the message as a run of records (a header, then plain and
//!   Blosc segments, each with its own checksum), so that neither side has to hold a
//!   whole message.
//!
//! Everything a decoder reads is untrusted: checksums first, then every count and size
//! against the [`Limits`] and against each other, before anything is allocated.

mod error;
pub mod stream;
pub mod v1;

pub use error::ContainerError;
pub use v1::{
    CHECKSUM_LEN, Container, EncodedContainer, HEADER_LEN, MIN_LEN, PATCH_ENTRY_LEN, PatchInfo,
    PatchReport, PatchSpec, VERSION, decode, encode,
};

/// The first four bytes of every container and of every version-2 header record.
pub const MAGIC: [u8; 4] = *b"BLCR";

/// Bounds a decoder enforces before allocating anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest restored message, in bytes.
    pub max_message_size: usize,
    /// Most patches in one version-1 container.
    pub max_patches: usize,
    /// Most bytes one version-2 segment may restore: bounds what one record costs the
    /// receiver to decompress or hold before it can pass the bytes on.
    pub max_segment_len: usize,
}

impl Limits {
    /// The largest gRPC message: its length prefix is a u32.
    pub const GRPC_MAX_MESSAGE: usize = u32::MAX as usize;
    /// The default [`Limits::max_segment_len`]: 4 MiB.
    pub const DEFAULT_MAX_SEGMENT: usize = 4 << 20;
}

impl Default for Limits {
    /// Messages up to the gRPC maximum (4 GiB − 1), 4096 patches per version-1
    /// container, 4 MiB per version-2 segment.
    fn default() -> Self {
        Self {
            max_message_size: Self::GRPC_MAX_MESSAGE,
            max_patches: 4096,
            max_segment_len: Self::DEFAULT_MAX_SEGMENT,
        }
    }
}
