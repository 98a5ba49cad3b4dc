//! The sending side of a run: header and segment records.

use super::record::segment_checksum;
use super::{HEADER_RECORD_LEN, MAX_SEGMENT_LEN, SEGMENT_HEAD_LEN, STREAM_VERSION, SegmentKind};
use crate::codec::{self, CompressOptions};
use crate::container::{ContainerError, MAGIC};

/// The header record that opens a container restoring `restored_len` bytes.
pub fn header_record(restored_len: u64) -> [u8; HEADER_RECORD_LEN] {
    let mut record = [0; HEADER_RECORD_LEN];
    record[0..4].copy_from_slice(&MAGIC);
    record[4] = STREAM_VERSION;
    record[8..16].copy_from_slice(&restored_len.to_le_bytes());
    let checksum = crc32fast::hash(&record[..16]);
    record[16..20].copy_from_slice(&checksum.to_le_bytes());
    record
}

/// The head of a plain segment carrying `data`: the caller sends the head, then `data`
/// itself, as one record, so the bytes are never copied.
///
/// `data` must hold 1 to [`MAX_SEGMENT_LEN`] bytes.
pub fn plain_segment_head(data: &[u8]) -> Result<[u8; SEGMENT_HEAD_LEN], ContainerError> {
    let restored_len = segment_len(data)?;
    let mut head = [0; SEGMENT_HEAD_LEN];
    write_head(&mut head, SegmentKind::Plain, restored_len, data);
    Ok(head)
}

/// A whole Blosc segment record: its head, then `data` compressed as one Blosc chunk
/// with `typesize` (the element size that drives shuffling) and `options`.
///
/// `data` must hold 1 to [`MAX_SEGMENT_LEN`] bytes.
pub fn blosc_segment(
    data: &[u8],
    typesize: usize,
    options: CompressOptions,
) -> Result<Vec<u8>, ContainerError> {
    let restored_len = segment_len(data)?;
    let mut record =
        Vec::with_capacity(SEGMENT_HEAD_LEN + codec::compressed_bound(data.len(), typesize));
    record.resize(SEGMENT_HEAD_LEN, 0);
    // At most MAX_CHUNK_BYTES of input: `compress` writes exactly one chunk.
    codec::compress(data, typesize, options, &mut record)
        .map_err(|source| ContainerError::CompressSegment { source })?;
    let (head, chunk) = record.split_at_mut(SEGMENT_HEAD_LEN);
    write_head(head, SegmentKind::Blosc, restored_len, chunk);
    Ok(record)
}

fn segment_len(data: &[u8]) -> Result<u32, ContainerError> {
    if data.is_empty() {
        return Err(ContainerError::InvalidSpecs("empty segment"));
    }
    if data.len() > MAX_SEGMENT_LEN {
        return Err(ContainerError::InvalidSpecs(
            "segment longer than one Blosc chunk holds",
        ));
    }
    // Cannot fail: MAX_SEGMENT_LEN is below u32::MAX.
    u32::try_from(data.len()).map_err(|_| ContainerError::InvalidSpecs("segment above 4 GiB"))
}

fn write_head(head: &mut [u8], kind: SegmentKind, restored_len: u32, payload: &[u8]) {
    head[0] = kind.id();
    head[1..4].fill(0);
    head[4..8].copy_from_slice(&restored_len.to_le_bytes());
    let checksum = segment_checksum(&head[..8], payload);
    head[8..12].copy_from_slice(&checksum.to_le_bytes());
}

/// How to send one stretch of a message, for [`encode_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSpec {
    /// The next `len` bytes as they are.
    Plain(usize),
    /// The next `len` bytes as one Blosc chunk.
    Blosc {
        /// Bytes of the message the segment covers.
        len: usize,
        /// The element size that drives Blosc's shuffle.
        typesize: usize,
        /// How to compress them.
        options: CompressOptions,
    },
}

impl SegmentSpec {
    /// Bytes of the message the segment covers.
    pub fn len(&self) -> usize {
        match *self {
            SegmentSpec::Plain(len) | SegmentSpec::Blosc { len, .. } => len,
        }
    }

    /// Whether the segment covers no bytes (which no segment may).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The whole run for `msg`: its header record, then one record per spec, in order.
///
/// A convenience for tests and tools that have the whole message at hand; it copies
/// plain bytes into their records, which a sidecar avoids by sending
/// [`plain_segment_head`] and the data separately. The specs must cover `msg` exactly.
pub fn encode_run(msg: &[u8], specs: &[SegmentSpec]) -> Result<Vec<Vec<u8>>, ContainerError> {
    if specs.iter().map(SegmentSpec::len).sum::<usize>() != msg.len() {
        return Err(ContainerError::InvalidSpecs(
            "segments do not cover the message exactly",
        ));
    }
    let mut records = Vec::with_capacity(specs.len() + 1);
    records.push(header_record(msg.len() as u64).to_vec());
    let mut rest = msg;
    for spec in specs {
        let (data, after) = rest.split_at(spec.len());
        rest = after;
        records.push(match *spec {
            SegmentSpec::Plain(_) => {
                let mut record = plain_segment_head(data)?.to_vec();
                record.extend_from_slice(data);
                record
            }
            SegmentSpec::Blosc {
                typesize, options, ..
            } => blosc_segment(data, typesize, options)?,
        });
    }
    Ok(records)
}
