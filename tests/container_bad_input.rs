//! Untrusted containers: every corruption or lie gives a typed error, never a panic.

use bloscar::ErrorKind;
use bloscar::codec::CodecError;
use bloscar::container::{self, ContainerError, Limits, PATCH_ENTRY_LEN, PatchSpec};
use proptest::prelude::*;

const HEADER: usize = container::HEADER_LEN;

/// A message with a smooth FP32 tensor, a mask and an int64 ramp, and its container.
fn sample() -> (Vec<u8>, Vec<u8>) {
    let mut msg = b"\x0a\x05model".to_vec();
    let floats = msg.len();
    msg.extend((0..600).flat_map(|i| (i as f32 * 0.05).sin().to_le_bytes()));
    msg.extend_from_slice(b"\x12\x03abc");
    let mask = msg.len();
    msg.extend((0..700).map(|i| u8::from(i % 97 < 20)));
    let ints = msg.len();
    msg.extend((0..150i64).flat_map(|i| (i * 3).to_le_bytes()));
    msg.extend_from_slice(b"tail");
    let specs = [
        PatchSpec {
            offset: floats,
            len: 2400,
            elem_size: 4,
            options: "lz4:5:byte".parse().unwrap(),
        },
        PatchSpec {
            offset: mask,
            len: 700,
            elem_size: 1,
            options: "zstd:3:bit".parse().unwrap(),
        },
        PatchSpec {
            offset: ints,
            len: 1200,
            elem_size: 8,
            options: "blosclz:9:byte".parse().unwrap(),
        },
    ];
    let encoded = container::encode(&msg, &specs).unwrap();
    (msg, encoded.bytes)
}

fn decode(bytes: &[u8]) -> Result<Vec<u8>, ContainerError> {
    container::decode(bytes, &Limits::default())
}

/// Recomputes the trailing checksum, as a lying (rather than corrupted) encoder would.
fn resign(bytes: &mut [u8]) {
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn entry(i: usize) -> usize {
    HEADER + i * PATCH_ENTRY_LEN
}

/// The sample container edited by `edit`, re-signed, then decoded.
fn lie(edit: impl FnOnce(&mut Vec<u8>)) -> ContainerError {
    let (_, mut bytes) = sample();
    edit(&mut bytes);
    resign(&mut bytes);
    decode(&bytes).unwrap_err()
}

fn bad_patch(err: &ContainerError, index: usize) -> bool {
    matches!(err, ContainerError::BadPatch { index: i, .. } if *i == index)
}

#[test]
fn sample_round_trips() {
    let (msg, bytes) = sample();
    assert_eq!(decode(&bytes).unwrap(), msg);
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let (_, bytes) = sample();
    for len in 0..bytes.len() {
        let err = decode(&bytes[..len]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DataLoss, "truncated to {len}: {err}");
    }
}

#[test]
fn every_single_bit_flip_fails_the_checksum() {
    let (_, mut bytes) = sample();
    for bit in 0..bytes.len() * 8 {
        bytes[bit / 8] ^= 1 << (bit % 8);
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(err, ContainerError::ChecksumMismatch { .. }),
            "bit {bit}: {err}"
        );
        assert_eq!(err.kind(), ErrorKind::DataLoss);
        bytes[bit / 8] ^= 1 << (bit % 8);
    }
}

#[test]
fn header_lies_are_rejected() {
    assert_eq!(lie(|b| b[0] = b'X'), ContainerError::BadMagic);
    assert_eq!(lie(|b| b[4] = 2), ContainerError::UnsupportedVersion(2));
    assert_eq!(lie(|b| b[6] = 1), ContainerError::ReservedBitsSet);
    assert_eq!(
        lie(|b| b[entry(1) + 31] = 1),
        ContainerError::ReservedBitsSet
    );
    for err in [
        lie(|b| put_u64(b, 20, 17)),
        lie(|b| b.insert(HEADER + 3 * PATCH_ENTRY_LEN, 0)),
    ] {
        assert!(
            matches!(err, ContainerError::LengthMismatch { .. }),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
    // More entries than the bytes that follow could hold.
    let err = lie(|b| put_u32(b, 8, 4000));
    assert!(
        matches!(err, ContainerError::LengthMismatch { .. }),
        "{err}"
    );
}

#[test]
fn sizes_beyond_the_limits_are_resource_exhausted() {
    for err in [
        lie(|b| put_u64(b, 12, 1 << 40)),
        lie(|b| put_u64(b, 12, u64::MAX)),
        lie(|b| put_u32(b, 8, u32::MAX)),
    ] {
        assert!(
            matches!(
                err,
                ContainerError::MessageTooLarge { .. } | ContainerError::TooManyPatches { .. }
            ),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    }
    let (_, bytes) = sample();
    let tight = Limits {
        max_message_size: 4000,
        max_patches: 2,
        ..Limits::default()
    };
    assert!(matches!(
        container::decode(&bytes, &tight),
        Err(ContainerError::TooManyPatches { declared: 3, .. })
    ));
}

#[test]
fn lying_patch_tables_are_rejected() {
    let (msg, bytes) = sample();
    let offset = |i: usize| u64::from_le_bytes(bytes[entry(i)..entry(i) + 8].try_into().unwrap());
    let cases = [
        // Overlaps the previous patch.
        (1, lie(|b| put_u64(b, entry(1), offset(0) + 1))),
        // Out of order.
        (2, lie(|b| put_u64(b, entry(2), 0))),
        // Past the end of the message.
        (2, lie(|b| put_u64(b, entry(2), msg.len() as u64))),
        (0, lie(|b| put_u64(b, entry(0) + 8, msg.len() as u64))),
        // offset + len overflows.
        (2, lie(|b| put_u64(b, entry(2), u64::MAX - 1))),
        (0, lie(|b| put_u64(b, entry(0) + 8, u64::MAX))),
        // Compressed lengths that overflow or run past the end.
        (1, lie(|b| put_u64(b, entry(1) + 16, u64::MAX))),
        (0, lie(|b| put_u64(b, entry(0) + 16, 1 << 40))),
        // Empty patch.
        (0, lie(|b| put_u64(b, entry(0) + 8, 0))),
        // Unknown codec, level, shuffle.
        (1, lie(|b| b[entry(1) + 28] = 6)),
        (1, lie(|b| b[entry(1) + 29] = 10)),
        (1, lie(|b| b[entry(1) + 30] = 3)),
    ];
    for (index, err) in cases {
        assert!(bad_patch(&err, index), "patch {index}: {err}");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}

/// Offset of patch `i`'s Blosc data in the sample container.
fn patch_data_at(bytes: &[u8], i: usize) -> usize {
    let read = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let skeleton_len = read(20);
    let earlier: usize = (0..i).map(|j| read(entry(j) + 16)).sum();
    HEADER + 3 * PATCH_ENTRY_LEN + skeleton_len + earlier
}

#[test]
fn bad_blosc_data_in_a_patch_is_data_loss() {
    let (_, bytes) = sample();
    let at = patch_data_at(&bytes, 1);
    // Not Blosc at all.
    let err = lie(|b| b[at..at + 16].copy_from_slice(b"definitely not!!"));
    assert!(
        matches!(err, ContainerError::PatchData { index: 1, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::DataLoss);
    // A chunk header that declares more bytes than the patch holds.
    assert_eq!(
        lie(|b| put_u32(b, at + 4, 701)),
        ContainerError::PatchData {
            index: 1,
            source: CodecError::SizeMismatch {
                expected: 700,
                actual: 701
            }
        }
    );
    // A chunk header whose compressed size runs past the patch's data.
    let cbytes = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap());
    assert_eq!(
        lie(|b| put_u32(b, at + 12, cbytes + 1)),
        ContainerError::PatchData {
            index: 1,
            source: CodecError::InvalidChunk { offset: 0 }
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes, with or without a valid magic and checksum, never decode.
    #[test]
    fn random_bytes_are_rejected(mut bytes in prop::collection::vec(any::<u8>(), 0..400), sign in any::<bool>()) {
        if sign && bytes.len() >= container::MIN_LEN {
            bytes[..5].copy_from_slice(b"BLCR\x01");
            resign(&mut bytes);
        }
        prop_assert!(decode(&bytes).is_err());
    }

    /// Re-signed random edits of a valid container either fail with a typed error or
    /// (when they only touch compressed bytes c-blosc cannot check) decode to a message
    /// of the declared length; they never panic.
    #[test]
    fn resigned_edits_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let (msg, mut bytes) = sample();
        let body = bytes.len() - 4;
        for (at, value) in edits {
            bytes[at.index(body)] = value;
        }
        resign(&mut bytes);
        if let Ok(decoded) = decode(&bytes) {
            prop_assert_eq!(decoded.len(), msg.len());
        }
    }
}
