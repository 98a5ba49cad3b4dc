//! Compress ndarrays for storage or transport, like a numpy compressor library.
//!
//! [`compress_ndarray`] writes a self-describing frame (dtype, shape, Blosc data,
//! checksum; see `docs/wire-format.md`) that [`decompress_ndarray`] reads back without
//! being told the dtype or shape. [`compress`] and [`decompress`] work on raw bytes with
//! explicit settings. Every function takes its settings per call and keeps no state, so
//! all of them may run on any number of threads at once.

use crate::codec::{self, CodecError, CompressOptions};
use crate::container::Limits;
use crate::dtype::DType;
use crate::error_kind::ErrorKind;

pub use crate::codec::{compress, decompress};

/// The first four bytes of an ndarray frame.
pub const MAGIC: [u8; 4] = *b"BLND";
/// The frame version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the fixed part of the header (before the shape).
pub const HEADER_LEN: usize = 16;
/// Most dimensions a frame may have (numpy's limit).
pub const MAX_DIMS: usize = 64;
const CHECKSUM_LEN: usize = 4;

/// A decompressed ndarray: row-major, little-endian element bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ndarray {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major and little-endian.
    pub data: Vec<u8>,
}

/// Failures compressing or decompressing an ndarray frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdarrayError {
    /// Variable-width elements have no fixed size to check a shape against.
    #[error("dtype {0} has no fixed element size")]
    UnsupportedDType(DType),
    /// More dimensions than [`MAX_DIMS`].
    #[error("{0} dimensions exceed the maximum of {MAX_DIMS}")]
    TooManyDims(usize),
    /// The data length (given, or declared in a frame) is not the shape's element count
    /// times the element size.
    #[error("shape needs {expected:?} bytes but the data has {actual}")]
    ShapeMismatch {
        /// The bytes the shape calls for (`None` when that overflows).
        expected: Option<usize>,
        /// The bytes given or declared.
        actual: usize,
    },
    /// Shorter than its header, shape and checksum.
    #[error("ndarray frame of {len} bytes is truncated")]
    Truncated {
        /// The frame's length.
        len: usize,
    },
    /// The CRC-32 over the frame does not match its last four bytes.
    #[error("ndarray frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum the frame carries.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The bytes do not start with the ndarray magic.
    #[error("not a bloscar ndarray frame (bad magic)")]
    BadMagic,
    /// A frame version this decoder does not know.
    #[error("unsupported ndarray frame version {0}")]
    UnsupportedVersion(u8),
    /// Reserved header bytes are not zero.
    #[error("reserved bytes are set in the ndarray header")]
    ReservedBitsSet,
    /// A dtype code that is unknown or has no fixed element size.
    #[error("unknown or unsupported dtype code {0}")]
    UnknownDType(u8),
    /// The declared data size exceeds the limit.
    #[error("declared ndarray size {declared} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size the frame declares.
        declared: u64,
        /// The configured limit.
        limit: usize,
    },
    /// The Blosc data is invalid or does not hold exactly the declared bytes.
    #[error("ndarray data: {0}")]
    Data(CodecError),
    /// Compressing failed.
    #[error("compressing ndarray: {0}")]
    Compress(CodecError),
}

impl NdarrayError {
    /// How the failure maps to a gRPC status at the edge.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NdarrayError::Truncated { .. }
            | NdarrayError::ChecksumMismatch { .. }
            | NdarrayError::Data(_) => ErrorKind::DataLoss,
            NdarrayError::TooLarge { .. } => ErrorKind::ResourceExhausted,
            NdarrayError::Compress(e) => e.kind(),
            NdarrayError::UnsupportedDType(_)
            | NdarrayError::TooManyDims(_)
            | NdarrayError::ShapeMismatch { .. }
            | NdarrayError::BadMagic
            | NdarrayError::UnsupportedVersion(_)
            | NdarrayError::ReservedBitsSet
            | NdarrayError::UnknownDType(_) => ErrorKind::InvalidArgument,
        }
    }
}

/// Data bytes an array of `shape` holds, if that fits in `usize`.
fn data_len(item: usize, shape: impl IntoIterator<Item = u64>) -> Option<u64> {
    shape
        .into_iter()
        .try_fold(item as u64, |acc, dim| acc.checked_mul(dim))
}

/// Compresses one ndarray (`data`: row-major, little-endian elements) into a frame that
/// records its dtype and shape. Blosc's typesize is the dtype's element size.
pub fn compress_ndarray(
    data: &[u8],
    dtype: DType,
    shape: &[usize],
    opts: CompressOptions,
) -> Result<Vec<u8>, NdarrayError> {
    let item = dtype
        .item_size()
        .ok_or(NdarrayError::UnsupportedDType(dtype))?;
    if shape.len() > MAX_DIMS {
        return Err(NdarrayError::TooManyDims(shape.len()));
    }
    let expected = data_len(item, shape.iter().map(|&d| d as u64));
    if expected != Some(data.len() as u64) {
        return Err(NdarrayError::ShapeMismatch {
            expected: expected.and_then(|e| usize::try_from(e).ok()),
            actual: data.len(),
        });
    }
    let shape_len = 8 * shape.len();
    let mut out = Vec::with_capacity(
        HEADER_LEN + shape_len + codec::compressed_bound(data.len(), dtype.elem_size()) + 4,
    );
    out.extend_from_slice(&MAGIC);
    // DType::ALL has 18 entries: the code always fits in a byte.
    out.extend_from_slice(&[VERSION, dtype.bloscar_value() as u8, shape.len() as u8, 0]);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for &dim in shape {
        out.extend_from_slice(&(dim as u64).to_le_bytes());
    }
    codec::compress(data, dtype.elem_size(), opts, &mut out).map_err(NdarrayError::Compress)?;
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// Reads a frame written by [`compress_ndarray`]: checks the checksum, the header and
/// `limits.max_message_size` against the declared size before allocating.
pub fn decompress_ndarray(frame: &[u8], limits: &Limits) -> Result<Ndarray, NdarrayError> {
    let truncated = NdarrayError::Truncated { len: frame.len() };
    if frame.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(truncated);
    }
    let (body, stored) = frame.split_at(frame.len() - CHECKSUM_LEN);
    let stored = u32::from_le_bytes(stored.try_into().expect("four bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(NdarrayError::ChecksumMismatch { stored, computed });
    }
    if body[0..4] != MAGIC {
        return Err(NdarrayError::BadMagic);
    }
    if body[4] != VERSION {
        return Err(NdarrayError::UnsupportedVersion(body[4]));
    }
    if body[7] != 0 {
        return Err(NdarrayError::ReservedBitsSet);
    }
    let (dtype, item) = DType::from_bloscar(u64::from(body[5]))
        .and_then(|d| Some((d, d.item_size()?)))
        .ok_or(NdarrayError::UnknownDType(body[5]))?;
    let ndim = usize::from(body[6]);
    if ndim > MAX_DIMS {
        return Err(NdarrayError::TooManyDims(ndim));
    }
    let nbytes = u64::from_le_bytes(body[8..16].try_into().expect("eight bytes"));
    let Some((shape_bytes, chunks)) = body[HEADER_LEN..].split_at_checked(8 * ndim) else {
        return Err(truncated);
    };
    let dims = shape_bytes
        .chunks_exact(8)
        .map(|d| u64::from_le_bytes(d.try_into().expect("eight bytes")));
    let shape_len = data_len(item, dims.clone());
    if shape_len != Some(nbytes) {
        return Err(NdarrayError::ShapeMismatch {
            expected: shape_len.and_then(|len| usize::try_from(len).ok()),
            actual: usize::try_from(nbytes).unwrap_or(usize::MAX),
        });
    }
    let len = usize::try_from(nbytes)
        .ok()
        .filter(|&n| n <= limits.max_message_size)
        .ok_or(NdarrayError::TooLarge {
            declared: nbytes,
            limit: limits.max_message_size,
        })?;
    match codec::decompressed_len(chunks).map_err(NdarrayError::Data)? {
        actual if actual == len => {}
        actual => {
            return Err(NdarrayError::Data(CodecError::SizeMismatch {
                expected: len,
                actual,
            }));
        }
    }
    // Every dimension divides `nbytes`, which fits in usize (or the array is empty).
    let shape = dims
        .map(|d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let mut data = Vec::new();
    codec::decompress_append(chunks, len, &mut data).map_err(NdarrayError::Data)?;
    Ok(Ndarray { dtype, shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CompressOptions {
        CompressOptions::default()
    }

    #[test]
    fn round_trips_every_fixed_width_dtype() {
        for dtype in DType::ALL {
            let Some(item) = dtype.item_size() else {
                continue;
            };
            for shape in [vec![], vec![0], vec![3, 0, 2], vec![7], vec![2, 3, 5]] {
                let count: usize = shape.iter().product();
                let data: Vec<u8> = (0..count * item).map(|i| (i * 31 / 7) as u8).collect();
                let frame = compress_ndarray(&data, dtype, &shape, opts()).unwrap();
                let array = decompress_ndarray(&frame, &Limits::default()).unwrap();
                assert_eq!(array, Ndarray { dtype, shape, data });
            }
        }
    }

    #[test]
    fn rejects_inconsistent_inputs() {
        assert_eq!(
            compress_ndarray(&[0; 7], DType::F32, &[2], opts()),
            Err(NdarrayError::ShapeMismatch {
                expected: Some(8),
                actual: 7
            })
        );
        assert!(matches!(
            compress_ndarray(&[0; 8], DType::F32, &[usize::MAX, 3], opts()),
            Err(NdarrayError::ShapeMismatch { expected: None, .. })
        ));
        assert_eq!(
            compress_ndarray(b"ab", DType::Bytes, &[2], opts()),
            Err(NdarrayError::UnsupportedDType(DType::Bytes))
        );
        assert_eq!(
            compress_ndarray(&[1], DType::U8, &[1; 65], opts()),
            Err(NdarrayError::TooManyDims(65))
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let data: Vec<u8> = (0..400u32).flat_map(|i| (i / 9).to_le_bytes()).collect();
        let mut frame = compress_ndarray(&data, DType::U32, &[20, 20], opts()).unwrap();
        let limits = Limits::default();
        for len in 0..frame.len() {
            assert!(decompress_ndarray(&frame[..len], &limits).is_err());
        }
        for bit in 0..frame.len() * 8 {
            frame[bit / 8] ^= 1 << (bit % 8);
            let err = decompress_ndarray(&frame, &limits).unwrap_err();
            assert!(matches!(err, NdarrayError::ChecksumMismatch { .. }));
            frame[bit / 8] ^= 1 << (bit % 8);
        }
    }

    #[test]
    fn frame_whose_shape_contradicts_its_size_is_refused() {
        let mut frame = compress_ndarray(&[7; 24], DType::F32, &[2, 3], opts()).unwrap();
        frame[24] = 4; // shape [2, 4]: 32 bytes, but nbytes says 24
        let body = frame.len() - 4;
        let crc = crc32fast::hash(&frame[..body]);
        frame[body..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decompress_ndarray(&frame, &Limits::default()),
            Err(NdarrayError::ShapeMismatch {
                expected: Some(32),
                actual: 24
            })
        );
    }

    #[test]
    fn declared_size_beyond_the_limit_is_refused() {
        let frame = compress_ndarray(&[0; 4096], DType::U8, &[64, 64], opts()).unwrap();
        let small = Limits {
            max_message_size: 4095,
            ..Limits::default()
        };
        let err = decompress_ndarray(&frame, &small).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }
}
