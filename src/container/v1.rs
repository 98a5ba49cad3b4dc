//! Container version 1: a whole message as skeleton + patches, in one buffer with one
//! checksum. See `docs/wire-format.md`.
//!
//! A container holds a message with some byte ranges (the patches) cut out and
//! compressed with Blosc. Layout, all integers little-endian:
//!
//! ```text
//! header (28) | patch table (32 per patch) | skeleton | patch data | CRC-32 (4)
//! ```
//!
//! Everything in a container is untrusted: the decoder checks the checksum, then every
//! count and size against the limits and against each other, before it allocates.

use std::time::{Duration, Instant};

use super::{ContainerError, Limits, MAGIC};
use crate::codec::{self, Codec, CodecError, CompressOptions, Shuffle};

/// The version of the whole-message container, which this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 28;
/// Bytes of one patch-table entry.
pub const PATCH_ENTRY_LEN: usize = 32;
/// Bytes of the trailing checksum.
pub const CHECKSUM_LEN: usize = 4;
/// The smallest possible container: a header and a checksum.
pub const MIN_LEN: usize = HEADER_LEN + CHECKSUM_LEN;

/// A range of the message to compress, as the encoder is asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchSpec {
    /// Offset of the range in the message.
    pub offset: usize,
    /// Length of the range; must not be zero.
    pub len: usize,
    /// Element size, Blosc's typesize.
    pub elem_size: usize,
    /// How to compress the range.
    pub options: CompressOptions,
}

/// One patch as recorded in a container's patch table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchInfo {
    /// Offset of the range in the original message.
    pub offset: usize,
    /// Length of the range in the original message.
    pub len: usize,
    /// Bytes of Blosc chunks holding the range.
    pub compressed_len: usize,
    /// Element size the encoder used (informational; the chunks carry their own).
    pub elem_size: u32,
    /// Setting the encoder used (informational).
    pub options: CompressOptions,
}

/// What compressing one patch cost, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchReport {
    /// Bytes of Blosc chunks written for the patch.
    pub compressed_len: usize,
    /// Time spent in Blosc.
    pub compress_time: Duration,
}

/// A container and what compressing each patch cost, in the order of the specs.
#[derive(Debug, Clone)]
pub struct EncodedContainer {
    /// The container as it travels.
    pub bytes: Vec<u8>,
    /// One report per patch spec, in order.
    pub patches: Vec<PatchReport>,
}

/// Builds a container from `msg` with each spec's range compressed.
///
/// Specs must be sorted by offset, non-empty, non-overlapping and inside `msg`. The
/// output is written in one pass into a buffer reserved at its largest possible size:
/// the skeleton is copied once and Blosc writes the patches in place.
pub fn encode(msg: &[u8], specs: &[PatchSpec]) -> Result<EncodedContainer, ContainerError> {
    let mut patched_len = 0usize;
    let mut bound = HEADER_LEN + specs.len() * PATCH_ENTRY_LEN + CHECKSUM_LEN;
    let mut prev_end = 0usize;
    for spec in specs {
        let end = spec
            .offset
            .checked_add(spec.len)
            .filter(|&end| end <= msg.len())
            .ok_or(ContainerError::InvalidSpecs("range outside the message"))?;
        if spec.len == 0 {
            return Err(ContainerError::InvalidSpecs("empty range"));
        }
        if spec.offset < prev_end {
            return Err(ContainerError::InvalidSpecs(
                "ranges unsorted or overlapping",
            ));
        }
        prev_end = end;
        patched_len += spec.len;
        bound += codec::compressed_bound(spec.len, spec.elem_size);
    }
    let skeleton_len = msg.len() - patched_len;
    bound += skeleton_len;

    let mut out = Vec::with_capacity(bound);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&(specs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(msg.len() as u64).to_le_bytes());
    out.extend_from_slice(&(skeleton_len as u64).to_le_bytes());
    let table_start = out.len();
    out.resize(table_start + specs.len() * PATCH_ENTRY_LEN, 0);

    let mut copied = 0;
    for spec in specs {
        out.extend_from_slice(&msg[copied..spec.offset]);
        copied = spec.offset + spec.len;
    }
    out.extend_from_slice(&msg[copied..]);

    let mut reports = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let start = out.len();
        let began = Instant::now();
        codec::compress(
            &msg[spec.offset..spec.offset + spec.len],
            spec.elem_size,
            spec.options,
            &mut out,
        )
        .map_err(|source| ContainerError::Compress { index, source })?;
        let report = PatchReport {
            compressed_len: out.len() - start,
            compress_time: began.elapsed(),
        };
        let entry = table_start + index * PATCH_ENTRY_LEN;
        write_entry(
            &mut out[entry..entry + PATCH_ENTRY_LEN],
            spec,
            report.compressed_len,
        );
        reports.push(report);
    }
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    debug_assert!(out.len() <= bound);
    Ok(EncodedContainer {
        bytes: out,
        patches: reports,
    })
}

fn write_entry(entry: &mut [u8], spec: &PatchSpec, compressed_len: usize) {
    entry[0..8].copy_from_slice(&(spec.offset as u64).to_le_bytes());
    entry[8..16].copy_from_slice(&(spec.len as u64).to_le_bytes());
    entry[16..24].copy_from_slice(&(compressed_len as u64).to_le_bytes());
    let elem_size = u32::try_from(spec.elem_size).unwrap_or(u32::MAX);
    entry[24..28].copy_from_slice(&elem_size.to_le_bytes());
    entry[28] = spec.options.codec.id();
    entry[29] = spec.options.level;
    entry[30] = spec.options.shuffle.id();
    entry[31] = 0;
}

/// Restores the exact original message from a container.
pub fn decode(container: &[u8], limits: &Limits) -> Result<Vec<u8>, ContainerError> {
    Container::parse(container, limits)?.reconstruct()
}

/// A container whose checksum, header and patch table have been validated.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    message_len: usize,
    table: &'a [u8],
    skeleton: &'a [u8],
    patch_data: &'a [u8],
}

/// Where the parts of a validated container lie in its bytes, so that an owner of the
/// bytes can keep the result of [`Container::parse`] without borrowing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    message_len: usize,
    table_end: usize,
    skeleton_end: usize,
    data_end: usize,
}

impl Layout {
    /// The container these bytes held when [`Container::parse`] returned this layout.
    /// The bytes must be the same ones; nothing is checked again.
    pub(crate) fn view(self, bytes: &[u8]) -> Container<'_> {
        Container {
            message_len: self.message_len,
            table: &bytes[HEADER_LEN..self.table_end],
            skeleton: &bytes[self.table_end..self.skeleton_end],
            patch_data: &bytes[self.skeleton_end..self.data_end],
        }
    }

    /// Length of the original message.
    pub(crate) fn message_len(self) -> usize {
        self.message_len
    }
}

impl<'a> Container<'a> {
    /// Checks the checksum, the header, the limits and every patch-table entry; nothing
    /// is allocated.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Self, ContainerError> {
        Ok(Self::parse_layout(bytes, limits)?.view(bytes))
    }

    /// [`Container::parse`], answering where the parts lie instead of borrowing them.
    pub(crate) fn parse_layout(bytes: &[u8], limits: &Limits) -> Result<Layout, ContainerError> {
        let Some((body, stored)) = bytes
            .len()
            .checked_sub(CHECKSUM_LEN)
            .filter(|_| bytes.len() >= MIN_LEN)
            .map(|at| bytes.split_at(at))
        else {
            return Err(ContainerError::Truncated { len: bytes.len() });
        };
        let stored = u32::from_le_bytes(stored.try_into().expect("four bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(ContainerError::ChecksumMismatch { stored, computed });
        }
        if body[0..4] != MAGIC {
            return Err(ContainerError::BadMagic);
        }
        if body[4] != VERSION {
            return Err(ContainerError::UnsupportedVersion(body[4]));
        }
        if body[5..8] != [0, 0, 0] {
            return Err(ContainerError::ReservedBitsSet);
        }
        let count = read_u32(body, 8);
        if count as usize > limits.max_patches {
            return Err(ContainerError::TooManyPatches {
                declared: count,
                limit: limits.max_patches,
            });
        }
        let message_len = read_u64(body, 12);
        let message_len = usize::try_from(message_len)
            .ok()
            .filter(|&len| len <= limits.max_message_size)
            .ok_or(ContainerError::MessageTooLarge {
                declared: message_len,
                limit: limits.max_message_size,
            })?;
        let skeleton_len = read_u64(body, 20);

        let rest = &body[HEADER_LEN..];
        let table_len = count as usize * PATCH_ENTRY_LEN;
        if table_len > rest.len() {
            return Err(ContainerError::LengthMismatch {
                reason: "patch table runs past the end",
            });
        }
        let (table, rest) = rest.split_at(table_len);

        let mut patched_len = 0usize;
        let mut compressed_len = 0usize;
        let mut prev_end = 0usize;
        for (index, entry) in table.chunks_exact(PATCH_ENTRY_LEN).enumerate() {
            let patch = parse_entry(entry, index)?;
            let bad = |reason| ContainerError::BadPatch { index, reason };
            if patch.len == 0 {
                return Err(bad("empty patch"));
            }
            if patch.offset < prev_end {
                return Err(bad("offset before the end of the previous patch"));
            }
            prev_end = patch
                .offset
                .checked_add(patch.len)
                .filter(|&end| end <= message_len)
                .ok_or(bad("range beyond the message"))?;
            // Cannot overflow: the ranges are disjoint and inside `message_len`.
            patched_len += patch.len;
            compressed_len = compressed_len
                .checked_add(patch.compressed_len)
                .filter(|&total| total <= rest.len())
                .ok_or(bad("compressed data runs past the end"))?;
        }
        if skeleton_len != (message_len - patched_len) as u64 {
            return Err(ContainerError::LengthMismatch {
                reason: "skeleton length is not the message length minus the patches",
            });
        }
        // `skeleton_len` fits: it is at most `message_len`.
        let skeleton_len = skeleton_len as usize;
        if skeleton_len.checked_add(compressed_len) != Some(rest.len()) {
            return Err(ContainerError::LengthMismatch {
                reason: "skeleton and patch data do not fill the container",
            });
        }
        let table_end = HEADER_LEN + table_len;
        let layout = Layout {
            message_len,
            table_end,
            skeleton_end: table_end + skeleton_len,
            data_end: body.len(),
        };
        let container = layout.view(bytes);
        // The chunk headers must account for every patch byte before anything is
        // allocated for them.
        for (index, (patch, chunks)) in container.patches_with_data().enumerate() {
            match codec::decompressed_len(chunks) {
                Ok(len) if len == patch.len => {}
                Ok(actual) => {
                    let source = CodecError::SizeMismatch {
                        expected: patch.len,
                        actual,
                    };
                    return Err(ContainerError::PatchData { index, source });
                }
                Err(source) => return Err(ContainerError::PatchData { index, source }),
            }
        }
        Ok(layout)
    }

    /// Length of the original message.
    pub fn message_len(&self) -> usize {
        self.message_len
    }

    /// The patch-table entries, in order (already validated by [`Container::parse`]).
    pub fn patches(&self) -> impl ExactSizeIterator<Item = PatchInfo> + '_ {
        self.table
            .chunks_exact(PATCH_ENTRY_LEN)
            .enumerate()
            .map(|(index, entry)| parse_entry(entry, index).expect("validated by parse"))
    }

    /// Each patch with its Blosc data.
    fn patches_with_data(&self) -> impl Iterator<Item = (PatchInfo, &'a [u8])> + '_ {
        let mut data = self.patch_data;
        self.patches().map(move |patch| {
            let (chunks, rest) = data.split_at(patch.compressed_len);
            data = rest;
            (patch, chunks)
        })
    }

    /// Splices the decompressed patches into the skeleton: the original message.
    pub fn reconstruct(&self) -> Result<Vec<u8>, ContainerError> {
        let mut out = Vec::with_capacity(self.message_len);
        let mut skeleton = self.skeleton;
        for (index, (patch, chunks)) in self.patches_with_data().enumerate() {
            let (gap, skeleton_rest) = skeleton.split_at(patch.offset - out.len());
            out.extend_from_slice(gap);
            codec::decompress_append(chunks, patch.len, &mut out)
                .map_err(|source| ContainerError::PatchData { index, source })?;
            skeleton = skeleton_rest;
        }
        out.extend_from_slice(skeleton);
        debug_assert_eq!(out.len(), self.message_len);
        Ok(out)
    }
}

fn parse_entry(entry: &[u8], index: usize) -> Result<PatchInfo, ContainerError> {
    let bad = |reason| ContainerError::BadPatch { index, reason };
    let size = |at| usize::try_from(read_u64(entry, at)).map_err(|_| bad("size beyond usize"));
    let codec = Codec::from_id(entry[28]).ok_or(bad("unknown codec id"))?;
    let shuffle = Shuffle::from_id(entry[30]).ok_or(bad("unknown shuffle id"))?;
    let options =
        CompressOptions::new(codec, entry[29], shuffle).map_err(|_| bad("level above 9"))?;
    if entry[31] != 0 {
        return Err(ContainerError::ReservedBitsSet);
    }
    Ok(PatchInfo {
        offset: size(0)?,
        len: size(8)?,
        compressed_len: size(16)?,
        elem_size: read_u32(entry, 24),
        options,
    })
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_kind::ErrorKind;

    fn spec(offset: usize, len: usize) -> PatchSpec {
        PatchSpec {
            offset,
            len,
            elem_size: 4,
            options: CompressOptions::default(),
        }
    }

    #[test]
    fn round_trips_with_patches_anywhere() {
        let msg: Vec<u8> = (0..4000u32).flat_map(|i| (i / 3).to_le_bytes()).collect();
        let n = msg.len();
        for specs in [
            vec![],
            vec![spec(0, n)],
            vec![spec(0, 100), spec(100, 200)],
            vec![spec(1, 1000), spec(2000, 3000), spec(n - 1, 1)],
        ] {
            let encoded = encode(&msg, &specs).unwrap();
            assert_eq!(encoded.patches.len(), specs.len());
            let container = Container::parse(&encoded.bytes, &Limits::default()).unwrap();
            assert_eq!(container.patches().len(), specs.len());
            assert_eq!(container.reconstruct().unwrap(), msg);
        }
    }

    #[test]
    fn encoder_rejects_bad_specs() {
        let msg = [0u8; 100];
        for specs in [
            vec![spec(0, 0)],
            vec![spec(50, 51)],
            vec![spec(usize::MAX, 2)],
            vec![spec(10, 10), spec(15, 10)],
            vec![spec(50, 10), spec(10, 10)],
        ] {
            let err = encode(&msg, &specs).unwrap_err();
            assert!(matches!(err, ContainerError::InvalidSpecs(_)), "{specs:?}");
            assert_eq!(err.kind(), ErrorKind::Internal);
        }
    }
}
