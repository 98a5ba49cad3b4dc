//! Reading one record on its own: its checksum and its fixed fields, before anything
//! about the run it belongs to is considered.

use super::{HEADER_RECORD_LEN, SEGMENT_HEAD_LEN, STREAM_VERSION, SegmentKind};
use crate::container::{ContainerError, MAGIC};

/// A record whose checksum and fixed fields are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// A version-2 header record.
    Header {
        /// The length of the message the container restores.
        restored_len: u64,
    },
    /// A segment record; its payload follows the head.
    Segment {
        /// What the payload holds.
        kind: SegmentKind,
        /// Bytes the segment restores (not yet checked against anything).
        restored_len: u32,
    },
    /// A whole version-1 container: the version-1 parser checks it.
    WholeV1,
}

/// The CRC-32 of a segment: its first eight bytes, then its payload.
pub(super) fn segment_checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(payload);
    crc.finalize()
}

/// Checks a record's checksum, then its fixed fields.
///
/// A record is told apart by its first bytes and, for the magic, its length: a header
/// record is exactly 20 bytes and a version-1 container at least 32. Anything else is
/// read as a segment, so that a damaged first byte fails a checksum (data loss) rather
/// than naming an unknown record type.
pub(super) fn read_head(record: &[u8]) -> Result<Head, ContainerError> {
    if record.starts_with(&MAGIC) {
        if record.len() == HEADER_RECORD_LEN {
            return read_header(record);
        }
        return Ok(Head::WholeV1);
    }
    read_segment_head(record)
}

fn read_header(record: &[u8]) -> Result<Head, ContainerError> {
    let stored = read_u32(record, 16);
    let computed = crc32fast::hash(&record[..16]);
    if stored != computed {
        return Err(ContainerError::ChecksumMismatch { stored, computed });
    }
    if record[4] != STREAM_VERSION {
        return Err(ContainerError::UnsupportedVersion(record[4]));
    }
    if record[5] != 0 {
        return Err(ContainerError::UnsupportedFlags(record[5]));
    }
    if record[6..8] != [0, 0] {
        return Err(ContainerError::ReservedBitsSet);
    }
    let restored_len = u64::from_le_bytes(record[8..16].try_into().expect("eight bytes"));
    Ok(Head::Header { restored_len })
}

fn read_segment_head(record: &[u8]) -> Result<Head, ContainerError> {
    if record.len() < SEGMENT_HEAD_LEN {
        return Err(ContainerError::RecordTruncated {
            len: record.len(),
            min: SEGMENT_HEAD_LEN,
        });
    }
    let stored = read_u32(record, 8);
    let computed = segment_checksum(&record[..8], &record[SEGMENT_HEAD_LEN..]);
    if stored != computed {
        return Err(ContainerError::ChecksumMismatch { stored, computed });
    }
    let kind =
        SegmentKind::from_id(record[0]).ok_or(ContainerError::UnknownSegmentKind(record[0]))?;
    if record[1..4] != [0, 0, 0] {
        return Err(ContainerError::ReservedBitsSet);
    }
    Ok(Head::Segment {
        kind,
        restored_len: read_u32(record, 4),
    })
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}
