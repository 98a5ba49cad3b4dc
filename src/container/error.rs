//! What can go wrong encoding or decoding a container, and its class of failure.

use super::v1::MIN_LEN;
use crate::codec::CodecError;
use crate::error_kind::ErrorKind;

/// Failures encoding or decoding a container; everything in a container is untrusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    /// Shorter than a header and a checksum.
    #[error("container of {len} bytes is shorter than the minimum of {MIN_LEN}")]
    Truncated {
        /// The container's length.
        len: usize,
    },
    /// The CRC-32 over a container or record does not match the one it carries.
    #[error("container checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum the container or record carries.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The bytes do not start with the bloscar magic.
    #[error("not a bloscar container (bad magic)")]
    BadMagic,
    /// A format version this decoder does not know.
    #[error("unsupported bloscar container version {0}")]
    UnsupportedVersion(u8),
    /// Reserved bytes of a header, patch-table entry or segment are not zero.
    #[error("reserved bytes are set in the container header, patch table or segment")]
    ReservedBitsSet,
    /// The reconstructed message would exceed the limit.
    #[error("declared message size {declared} exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The size the header declares.
        declared: u64,
        /// The configured limit.
        limit: usize,
    },
    /// More patches than the limit allows.
    #[error("declared patch count {declared} exceeds the limit of {limit}")]
    TooManyPatches {
        /// The count the header declares.
        declared: u32,
        /// The configured limit.
        limit: usize,
    },
    /// A patch-table entry contradicts the header or the entries before it.
    #[error("patch {index}: {reason}")]
    BadPatch {
        /// The entry's position in the patch table.
        index: usize,
        /// What it contradicts.
        reason: &'static str,
    },
    /// The sizes in the header and patch table do not add up to the container's length.
    #[error("container sizes do not add up: {reason}")]
    LengthMismatch {
        /// Which sizes disagree.
        reason: &'static str,
    },
    /// A patch's Blosc data is invalid, or does not hold exactly the patch's length.
    #[error("patch {index}: {source}")]
    PatchData {
        /// The patch's position in the patch table.
        index: usize,
        /// What the Blosc wrapper found.
        source: CodecError,
    },
    /// The encoder was given ranges that are unsorted, overlapping, empty or outside
    /// the message.
    #[error("invalid patch ranges for encoding: {0}")]
    InvalidSpecs(&'static str),
    /// Blosc failed while compressing a patch.
    #[error("compressing patch {index}: {source}")]
    Compress {
        /// The patch's position in the specs.
        index: usize,
        /// What Blosc reported.
        source: CodecError,
    },
    /// A version-2 record is shorter than its fixed head.
    #[error("record of {len} bytes is shorter than its {min}-byte head")]
    RecordTruncated {
        /// The record's length.
        len: usize,
        /// The length of the head its first bytes call for.
        min: usize,
    },
    /// A header record's flags are not all known (this decoder knows none).
    #[error("unsupported header flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// A segment record's kind is neither plain (1) nor Blosc (2).
    #[error("unknown segment kind {0}")]
    UnknownSegmentKind(u8),
    /// A container starts while the previous one still owes bytes.
    #[error("a container starts while the open one still owes {owed} bytes")]
    ContainerStillOpen {
        /// Bytes the open container has yet to restore.
        owed: u64,
    },
    /// A segment arrives when no container is open.
    #[error("segment outside a container")]
    SegmentOutsideContainer,
    /// A segment declares that it restores no bytes.
    #[error("empty segment")]
    EmptySegment,
    /// A segment restores more bytes than the limit allows.
    #[error("segment restores {declared} bytes, above the limit of {limit}")]
    SegmentTooLarge {
        /// The size the segment declares.
        declared: u32,
        /// The configured limit.
        limit: usize,
    },
    /// A segment restores more bytes than its container has left.
    #[error("segment restores {declared} bytes where the container owes only {owed}")]
    SegmentOverrun {
        /// The size the segment declares.
        declared: u32,
        /// Bytes the open container has yet to restore.
        owed: u64,
    },
    /// A plain segment's payload is not as long as the bytes it says it restores.
    #[error("plain segment declares {declared} bytes but carries {payload}")]
    SegmentLengthMismatch {
        /// The size the segment declares.
        declared: u32,
        /// The payload's length.
        payload: usize,
    },
    /// A Blosc segment's payload is not one valid chunk of the declared size, or does
    /// not decompress.
    #[error("blosc segment: {source}")]
    SegmentData {
        /// What the Blosc wrapper found.
        source: CodecError,
    },
    /// The stream ended while a container still owed bytes.
    #[error("stream ended inside a container that still owes {owed} bytes")]
    StreamTruncated {
        /// Bytes the open container had yet to restore.
        owed: u64,
    },
    /// Blosc failed while compressing a segment.
    #[error("compressing a segment: {source}")]
    CompressSegment {
        /// What Blosc reported.
        source: CodecError,
    },
}

impl ContainerError {
    /// How the failure maps to a gRPC status at the edge.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::Truncated { .. }
            | ContainerError::ChecksumMismatch { .. }
            | ContainerError::PatchData { .. }
            | ContainerError::RecordTruncated { .. }
            | ContainerError::SegmentData { .. }
            | ContainerError::StreamTruncated { .. } => ErrorKind::DataLoss,
            ContainerError::BadMagic
            | ContainerError::UnsupportedVersion(_)
            | ContainerError::ReservedBitsSet
            | ContainerError::BadPatch { .. }
            | ContainerError::LengthMismatch { .. }
            | ContainerError::UnsupportedFlags(_)
            | ContainerError::UnknownSegmentKind(_)
            | ContainerError::ContainerStillOpen { .. }
            | ContainerError::SegmentOutsideContainer
            | ContainerError::EmptySegment
            | ContainerError::SegmentOverrun { .. }
            | ContainerError::SegmentLengthMismatch { .. } => ErrorKind::InvalidArgument,
            ContainerError::MessageTooLarge { .. }
            | ContainerError::TooManyPatches { .. }
            | ContainerError::SegmentTooLarge { .. } => ErrorKind::ResourceExhausted,
            ContainerError::InvalidSpecs(_) => ErrorKind::Internal,
            ContainerError::Compress { source, .. }
            | ContainerError::CompressSegment { source } => source.kind(),
        }
    }
}
