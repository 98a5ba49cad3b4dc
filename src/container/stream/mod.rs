//! Container version 2: one message as a run of records, so that neither sidecar holds
//! a whole message. See `docs/wire-format.md`, "Version 2: the streamed container".
//!
//! Each record travels as its own gRPC message with the compressed flag set. A run is a
//! header record, which announces the restored message's length, then segment records
//! (plain bytes, or one Blosc chunk) until they have restored exactly that length. Every
//! record carries its own CRC-32, so a receiver can check and pass on each one as it
//! arrives. All integers are little-endian:
//!
//! ```text
//! header:  "BLCR" | version 2 (u8) | flags (u8) | reserved (u16) | restored_len (u64) | CRC-32 (u32)
//! segment: kind (u8) | reserved (3) | restored_len (u32) | CRC-32 (u32) | payload
//! ```
//!
//! The header's CRC covers its first 16 bytes; a segment's covers its first 8 bytes
//! followed by its payload.

mod decoder;
mod encode;
mod job;
mod record;

pub use decoder::{Record, StreamDecoder};
pub use encode::{SegmentSpec, blosc_segment, encode_run, header_record, plain_segment_head};
pub use job::RestoreJob;

use crate::codec;

/// The version of the streamed container.
pub const STREAM_VERSION: u8 = 2;
/// Bytes of a header record.
pub const HEADER_RECORD_LEN: usize = 20;
/// Bytes of a segment record before its payload.
pub const SEGMENT_HEAD_LEN: usize = 12;
/// The most bytes one segment can restore: its `restored_len` is a u32, and a Blosc
/// segment is one chunk, which holds at most [`codec::MAX_CHUNK_BYTES`].
pub const MAX_SEGMENT_LEN: usize = codec::MAX_CHUNK_BYTES;

/// What a segment's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    /// The restored bytes themselves.
    Plain = 1,
    /// One Blosc1 chunk that decompresses to the restored bytes.
    Blosc = 2,
}

impl SegmentKind {
    /// The kind's byte on the wire.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The kind with this wire byte.
    pub fn from_id(id: u8) -> Option<SegmentKind> {
        match id {
            1 => Some(SegmentKind::Plain),
            2 => Some(SegmentKind::Blosc),
            _ => None,
        }
    }
}
