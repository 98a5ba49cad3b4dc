//! Safe wrapper over c-blosc 1.x (`blosc-src`): the project's only `unsafe` code.
//!
//! Only the context functions (`blosc_compress_ctx`, `blosc_decompress_ctx`) are called:
//! they keep their state on the stack, so concurrent calls never share anything. Every
//! chunk is checked with `blosc_cbuffer_validate`, and its declared size against the
//! destination, before c-blosc decompresses it. A range larger than one chunk may hold
//! is split into several chunks written back to back.

use std::ffi::{CStr, c_int, c_void};
use std::mem::MaybeUninit;

use blosc_src as ffi;

use super::{Codec, CodecError, CompressOptions, Shuffle};

/// Bytes of a Blosc chunk header, and the most a chunk can grow over its input.
pub const CHUNK_OVERHEAD: usize = ffi::BLOSC_MAX_OVERHEAD as usize;

/// The largest input one Blosc chunk holds (2 GiB minus the header).
pub const MAX_CHUNK_BYTES: usize = ffi::BLOSC_MAX_BUFFERSIZE as usize;

/// Blosc threads per call: parallelism comes from concurrent calls, not inside one.
const THREADS: c_int = 1;

fn compressor_name(codec: Codec) -> &'static CStr {
    match codec {
        Codec::BloscLz => c"blosclz",
        Codec::Lz4 => c"lz4",
        Codec::Lz4Hc => c"lz4hc",
        Codec::Snappy => c"snappy",
        Codec::Zlib => c"zlib",
        Codec::Zstd => c"zstd",
    }
}

fn shuffle_flag(shuffle: Shuffle) -> c_int {
    (match shuffle {
        Shuffle::None => ffi::BLOSC_NOSHUFFLE,
        Shuffle::Byte => ffi::BLOSC_SHUFFLE,
        Shuffle::Bit => ffi::BLOSC_BITSHUFFLE,
    }) as c_int
}

/// Blosc accepts element sizes 1 to 255; outside that range shuffling cannot work, so
/// the data is treated as bytes.
fn blosc_typesize(typesize: usize) -> usize {
    if (1..=ffi::BLOSC_MAX_TYPESIZE as usize).contains(&typesize) {
        typesize
    } else {
        1
    }
}

/// Input bytes per chunk: the largest multiple of the element size within `max_chunk`,
/// so that no element straddles two chunks' shuffles.
fn chunk_input_len(typesize: usize, max_chunk: usize) -> usize {
    let max_chunk = max_chunk.clamp(1, MAX_CHUNK_BYTES);
    let aligned = max_chunk - max_chunk % typesize;
    if aligned == 0 { max_chunk } else { aligned }
}

fn chunk_count(len: usize, chunk_len: usize) -> usize {
    len.div_ceil(chunk_len).max(1)
}

/// The most bytes [`compress`] appends for `len` input bytes: the input plus one chunk
/// header per chunk. Reserving this much makes compression always succeed.
pub fn compressed_bound(len: usize, typesize: usize) -> usize {
    compressed_bound_split(len, typesize, MAX_CHUNK_BYTES)
}

fn compressed_bound_split(len: usize, typesize: usize, max_chunk: usize) -> usize {
    let chunk_len = chunk_input_len(blosc_typesize(typesize), max_chunk);
    len + chunk_count(len, chunk_len) * CHUNK_OVERHEAD
}

/// Appends to `dst` one or more Blosc chunks holding `src`: one per [`MAX_CHUNK_BYTES`]
/// of input, at least one (an empty input gives one empty chunk).
///
/// `typesize` is the element size that drives shuffling; sizes of 0 or above 255 are
/// treated as 1. Data that does not compress is stored (Blosc's memcpy chunks), so the
/// output never exceeds [`compressed_bound`].
pub fn compress(
    src: &[u8],
    typesize: usize,
    opts: CompressOptions,
    dst: &mut Vec<u8>,
) -> Result<(), CodecError> {
    compress_split(src, typesize, opts, dst, MAX_CHUNK_BYTES)
}

pub(crate) fn compress_split(
    src: &[u8],
    typesize: usize,
    opts: CompressOptions,
    dst: &mut Vec<u8>,
    max_chunk: usize,
) -> Result<(), CodecError> {
    if opts.level > CompressOptions::MAX_LEVEL {
        return Err(CodecError::InvalidLevel(opts.level));
    }
    let typesize = blosc_typesize(typesize);
    dst.reserve(compressed_bound_split(src.len(), typesize, max_chunk));
    let chunk_len = chunk_input_len(typesize, max_chunk);
    if src.is_empty() {
        return compress_chunk(src, typesize, opts, dst);
    }
    src.chunks(chunk_len)
        .try_for_each(|chunk| compress_chunk(chunk, typesize, opts, dst))
}

fn compress_chunk(
    src: &[u8],
    typesize: usize,
    opts: CompressOptions,
    dst: &mut Vec<u8>,
) -> Result<(), CodecError> {
    debug_assert!(src.len() <= MAX_CHUNK_BYTES);
    let room = src.len() + CHUNK_OVERHEAD;
    dst.reserve(room);
    let out = &mut dst.spare_capacity_mut()[..room];
    // SAFETY: `src` is a live slice of `src.len()` bytes (at most BLOSC_MAX_BUFFERSIZE)
    // and `out` is `room` bytes of writable spare capacity that does not overlap it;
    // c-blosc writes at most `destsize` bytes and reads at most `nbytes`. The compressor
    // name is a NUL-terminated static string. The context call keeps no global state.
    let written = unsafe {
        ffi::blosc_compress_ctx(
            c_int::from(opts.level),
            shuffle_flag(opts.shuffle),
            typesize,
            src.len(),
            src.as_ptr().cast::<c_void>(),
            out.as_mut_ptr().cast::<c_void>(),
            room,
            compressor_name(opts.codec).as_ptr(),
            0,
            THREADS,
        )
    };
    // With `destsize >= nbytes + BLOSC_MAX_OVERHEAD` c-blosc always succeeds; anything
    // else is an internal error.
    let written = usize::try_from(written)
        .ok()
        .filter(|&w| (CHUNK_OVERHEAD..=room).contains(&w))
        .ok_or(CodecError::CompressFailed(written))?;
    let new_len = dst.len() + written;
    // SAFETY: c-blosc initialised the first `written` bytes of the spare capacity
    // (checked above to lie within the `room` bytes reserved).
    unsafe { dst.set_len(new_len) };
    Ok(())
}

/// Fills `dst` exactly from the chunks [`compress`] produced.
///
/// Every chunk header is validated, and its declared size checked against the room left
/// in `dst`, before c-blosc reads the chunk; the chunks must fill `dst` exactly.
pub fn decompress(src: &[u8], dst: &mut [u8]) -> Result<(), CodecError> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and `decompress_uninit` only
    // ever writes initialised bytes through the view, so `dst` stays initialised.
    let dst = unsafe { &mut *(std::ptr::from_mut::<[u8]>(dst) as *mut [MaybeUninit<u8>]) };
    decompress_uninit(src, dst)
}

/// Appends exactly `len` decompressed bytes to `dst` (without zero-filling them first).
/// On error `dst` keeps its previous length.
pub fn decompress_append(src: &[u8], len: usize, dst: &mut Vec<u8>) -> Result<(), CodecError> {
    dst.reserve(len);
    decompress_uninit(src, &mut dst.spare_capacity_mut()[..len])?;
    let new_len = dst.len() + len;
    // SAFETY: `decompress_uninit` returned Ok, so it wrote all `len` bytes that follow
    // the initialised part of `dst`.
    unsafe { dst.set_len(new_len) };
    Ok(())
}

/// The total decompressed size the chunks in `src` declare, after validating every
/// chunk header; reads headers only, so it is cheap to call before allocating.
pub fn decompressed_len(src: &[u8]) -> Result<usize, CodecError> {
    let mut read = 0;
    let mut total = 0usize;
    while read < src.len() {
        let (chunk, nbytes) = validated_chunk(&src[read..], read)?;
        total = total
            .checked_add(nbytes)
            .ok_or(CodecError::InvalidChunk { offset: read })?;
        read += chunk.len();
    }
    Ok(total)
}

/// Decompresses `src` into `dst`; on success every byte of `dst` has been written.
fn decompress_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>]) -> Result<(), CodecError> {
    let mut read = 0;
    let mut written = 0;
    while read < src.len() {
        let (chunk, nbytes) = validated_chunk(&src[read..], read)?;
        let room = dst.len() - written;
        if nbytes > room {
            return Err(CodecError::SizeMismatch {
                expected: dst.len(),
                actual: written + nbytes,
            });
        }
        let out = &mut dst[written..written + nbytes];
        // SAFETY: `chunk` passed `blosc_cbuffer_validate` with its exact length, so its
        // header's compressed size equals the bytes available and c-blosc's bounds checks
        // keep reads inside it; `out` is `nbytes` writable bytes, disjoint from `chunk`,
        // and c-blosc writes at most `destsize` bytes. No global state is touched.
        let got = unsafe {
            ffi::blosc_decompress_ctx(
                chunk.as_ptr().cast::<c_void>(),
                out.as_mut_ptr().cast::<c_void>(),
                nbytes,
                THREADS,
            )
        };
        if usize::try_from(got).ok() != Some(nbytes) {
            return Err(CodecError::DecompressFailed(got));
        }
        read += chunk.len();
        written += nbytes;
    }
    if written != dst.len() {
        return Err(CodecError::SizeMismatch {
            expected: dst.len(),
            actual: written,
        });
    }
    Ok(())
}

/// The chunk at the start of `src` and its decompressed size, once c-blosc has accepted
/// its header. `offset` locates `src` in the whole input, for error reports.
fn validated_chunk(src: &[u8], offset: usize) -> Result<(&[u8], usize), CodecError> {
    let invalid = CodecError::InvalidChunk { offset };
    if src.len() < CHUNK_OVERHEAD {
        return Err(invalid);
    }
    let (mut nbytes, mut cbytes, mut blocksize) = (0usize, 0usize, 0usize);
    // SAFETY: `src` holds at least BLOSC_MIN_HEADER_LENGTH (16) bytes, all this function
    // reads; the three out-pointers are live locals.
    unsafe {
        ffi::blosc_cbuffer_sizes(
            src.as_ptr().cast::<c_void>(),
            &mut nbytes,
            &mut cbytes,
            &mut blocksize,
        )
    };
    if !(CHUNK_OVERHEAD..=src.len()).contains(&cbytes) {
        return Err(invalid);
    }
    let chunk = &src[..cbytes];
    let mut validated = 0usize;
    // SAFETY: `chunk` is a live slice of exactly `cbytes` bytes, the length passed, and
    // `validated` is a live local.
    let status = unsafe {
        ffi::blosc_cbuffer_validate(chunk.as_ptr().cast::<c_void>(), cbytes, &mut validated)
    };
    if status != 0 || validated != nbytes {
        return Err(invalid);
    }
    Ok((chunk, nbytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 7 % 251) as u8).collect()
    }

    fn round_trip_split(data: &[u8], typesize: usize, opts: CompressOptions, max_chunk: usize) {
        let mut packed = Vec::new();
        compress_split(data, typesize, opts, &mut packed, max_chunk).unwrap();
        assert!(packed.len() <= compressed_bound_split(data.len(), typesize, max_chunk));
        let mut out = vec![0u8; data.len()];
        decompress(&packed, &mut out).unwrap();
        assert_eq!(out, data);
        let mut appended = vec![7u8];
        decompress_append(&packed, data.len(), &mut appended).unwrap();
        assert_eq!(&appended[1..], data);
    }

    #[test]
    fn splits_into_chunks_of_whole_elements() {
        let data = ramp(10_000);
        let opts = CompressOptions::default();
        let mut packed = Vec::new();
        compress_split(&data, 4, opts, &mut packed, 1001).unwrap();
        // 1001 rounds down to 1000 bytes (250 elements): ten chunks.
        let mut chunks = 0;
        let mut rest = &packed[..];
        while !rest.is_empty() {
            let (chunk, nbytes) = validated_chunk(rest, 0).unwrap();
            assert_eq!(nbytes, 1000);
            rest = &rest[chunk.len()..];
            chunks += 1;
        }
        assert_eq!(chunks, 10);
        for max_chunk in [1, 3, 4, 17, 4096, 9999, 10_000, 10_001] {
            for typesize in [1, 2, 4, 8, 3] {
                round_trip_split(&data, typesize, opts, max_chunk);
            }
        }
    }

    #[test]
    fn empty_input_is_one_empty_chunk() {
        let mut packed = Vec::new();
        compress(&[], 4, CompressOptions::default(), &mut packed).unwrap();
        assert_eq!(packed.len(), CHUNK_OVERHEAD);
        decompress(&packed, &mut []).unwrap();
        // And no chunks at all also decode to nothing.
        decompress(&[], &mut []).unwrap();
    }

    #[test]
    fn typesize_outside_blosc_range_is_treated_as_bytes() {
        let data = ramp(5000);
        for typesize in [0, 256, 1000, usize::MAX] {
            round_trip_split(&data, typesize, CompressOptions::default(), MAX_CHUNK_BYTES);
        }
    }

    #[test]
    fn level_above_nine_is_rejected() {
        let opts = CompressOptions {
            level: 10,
            ..CompressOptions::default()
        };
        assert_eq!(
            compress(b"abc", 1, opts, &mut Vec::new()),
            Err(CodecError::InvalidLevel(10))
        );
    }

    #[test]
    fn size_mismatches_are_reported_before_decompressing() {
        let mut packed = Vec::new();
        compress(&ramp(100), 1, CompressOptions::default(), &mut packed).unwrap();
        assert_eq!(
            decompress(&packed, &mut [0u8; 99]),
            Err(CodecError::SizeMismatch {
                expected: 99,
                actual: 100
            })
        );
        assert_eq!(
            decompress(&packed, &mut [0u8; 101]),
            Err(CodecError::SizeMismatch {
                expected: 101,
                actual: 100
            })
        );
        let mut untouched = vec![1u8, 2];
        assert!(decompress_append(&packed, 101, &mut untouched).is_err());
        assert_eq!(untouched, [1, 2]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn split_round_trip_is_bit_exact(
            len in 0usize..6000,
            typesize in 0usize..20,
            max_chunk in 1usize..3000,
            codec in 0u8..6,
            shuffle in 0u8..3,
        ) {
            let opts = CompressOptions {
                codec: Codec::from_id(codec).unwrap(),
                level: 5,
                shuffle: Shuffle::from_id(shuffle).unwrap(),
            };
            round_trip_split(&ramp(len), typesize, opts, max_chunk);
        }
    }

    /// Crosses Blosc's 2 GiB chunk limit for real: needs about 5 GiB of memory.
    #[test]
    #[ignore = "allocates ~5 GiB; run with --ignored"]
    fn range_beyond_two_gib_is_split() {
        let len = MAX_CHUNK_BYTES + (64 << 20) + 3;
        let mut data = vec![0u8; len];
        for (i, b) in data.iter_mut().enumerate().step_by(4093) {
            *b = i as u8;
        }
        let mut packed = Vec::new();
        compress(&data, 4, CompressOptions::default(), &mut packed).unwrap();
        let (first, nbytes) = validated_chunk(&packed, 0).unwrap();
        assert_eq!(nbytes, MAX_CHUNK_BYTES - MAX_CHUNK_BYTES % 4);
        assert!(validated_chunk(&packed[first.len()..], first.len()).is_ok());
        let mut out = Vec::new();
        decompress_append(&packed, len, &mut out).unwrap();
        assert!(out == data);
    }
}
