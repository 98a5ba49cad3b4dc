//! The receiving side of a run: checks each record against the limits and against the
//! container it belongs to, and says what to do with it.

use bytes::Bytes;

use super::SEGMENT_HEAD_LEN;
use super::SegmentKind;
use super::job::RestoreJob;
use super::record::{self, Head};
use crate::codec::{self, CodecError};
use crate::container::{Container, ContainerError, Limits};

/// What one verified record asks of the receiver.
#[derive(Debug)]
pub enum Record {
    /// A version-2 container opened: the restored message will be `restored_len` bytes,
    /// so its gRPC length prefix can be written now.
    Start {
        /// Length of the message the container restores.
        restored_len: u64,
    },
    /// Verified bytes of the restored message, in order (a slice of the record).
    Plain(Bytes),
    /// A verified Blosc segment; decompress it off the async threads.
    Blosc(RestoreJob),
    /// A whole version-1 container, parsed and validated; restore it off the async
    /// threads.
    Whole(RestoreJob),
}

/// Follows the records of one gRPC stream (the flag-1 messages, in order).
///
/// Every record is untrusted. Each is checked, in this order, before anything is
/// allocated or decompressed: its checksum; its version, kind, flags and reserved
/// bytes; that it fits the state of the stream (a header only between containers, a
/// segment only inside one); its sizes against the [`Limits`] and against the bytes
/// the open container still owes; and, for a Blosc segment, the chunk's header.
///
/// After an error the stream is broken and should be abandoned; the decoder stays as it
/// was before the failing record.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    limits: Limits,
    /// Bytes the open container has yet to restore; zero between containers.
    owed: u64,
}

impl StreamDecoder {
    /// A decoder between containers, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, owed: 0 }
    }

    /// Checks one flag-1 record (a gRPC message's payload, without its 5-byte prefix).
    pub fn push(&mut self, record: Bytes) -> Result<Record, ContainerError> {
        match record::read_head(&record)? {
            Head::Header { restored_len } => self.start(restored_len),
            Head::Segment { kind, restored_len } => self.segment(record, kind, restored_len),
            Head::WholeV1 => self.whole(record),
        }
    }

    /// Whether a container is open: more segments are expected.
    pub fn is_open(&self) -> bool {
        self.owed > 0
    }

    /// Bytes the open container has yet to restore; zero between containers.
    pub fn owed(&self) -> u64 {
        self.owed
    }

    /// The stream ended: fails (data loss) when a container is still open.
    pub fn finish(&self) -> Result<(), ContainerError> {
        if self.is_open() {
            return Err(ContainerError::StreamTruncated { owed: self.owed });
        }
        Ok(())
    }

    fn start(&mut self, restored_len: u64) -> Result<Record, ContainerError> {
        self.check_closed()?;
        if restored_len > self.limits.max_message_size as u64 {
            return Err(ContainerError::MessageTooLarge {
                declared: restored_len,
                limit: self.limits.max_message_size,
            });
        }
        self.owed = restored_len;
        Ok(Record::Start { restored_len })
    }

    fn segment(
        &mut self,
        record: Bytes,
        kind: SegmentKind,
        restored_len: u32,
    ) -> Result<Record, ContainerError> {
        if !self.is_open() {
            return Err(ContainerError::SegmentOutsideContainer);
        }
        if restored_len == 0 {
            return Err(ContainerError::EmptySegment);
        }
        let len = restored_len as usize;
        if len > self.limits.max_segment_len {
            return Err(ContainerError::SegmentTooLarge {
                declared: restored_len,
                limit: self.limits.max_segment_len,
            });
        }
        if u64::from(restored_len) > self.owed {
            return Err(ContainerError::SegmentOverrun {
                declared: restored_len,
                owed: self.owed,
            });
        }
        let payload = record.slice(SEGMENT_HEAD_LEN..);
        let out = match kind {
            SegmentKind::Plain => {
                if payload.len() != len {
                    return Err(ContainerError::SegmentLengthMismatch {
                        declared: restored_len,
                        payload: payload.len(),
                    });
                }
                Record::Plain(payload)
            }
            SegmentKind::Blosc => {
                check_one_chunk(&payload, len)
                    .map_err(|source| ContainerError::SegmentData { source })?;
                Record::Blosc(RestoreJob::blosc(payload, len))
            }
        };
        self.owed -= u64::from(restored_len);
        Ok(out)
    }

    fn whole(&mut self, record: Bytes) -> Result<Record, ContainerError> {
        let layout = Container::parse_layout(&record, &self.limits)?;
        self.check_closed()?;
        Ok(Record::Whole(RestoreJob::whole(record, layout)))
    }

    fn check_closed(&self) -> Result<(), ContainerError> {
        if self.is_open() {
            return Err(ContainerError::ContainerStillOpen { owed: self.owed });
        }
        Ok(())
    }
}

/// Checks, from the chunk header alone, that `payload` is exactly one valid Blosc chunk
/// that decompresses to `len` bytes.
fn check_one_chunk(payload: &[u8], len: usize) -> Result<(), CodecError> {
    // Validates every chunk header in `payload` (c-blosc's `blosc_cbuffer_validate`).
    let declared = codec::decompressed_len(payload)?;
    // A valid chunk header is at least 16 bytes and stores its own length at 12..16.
    let cbytes = payload
        .get(12..16)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize);
    if cbytes != Some(payload.len()) {
        // A second chunk starts where the first one ends (or the payload is empty).
        return Err(CodecError::InvalidChunk {
            offset: cbytes.unwrap_or(0),
        });
    }
    if declared != len {
        return Err(CodecError::SizeMismatch {
            expected: len,
            actual: declared,
        });
    }
    Ok(())
}
