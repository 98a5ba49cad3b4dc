//! Untrusted streamed containers: every corruption, truncation or lie in a run of
//! records gives a typed error of the right class, never a panic.

use bloscar::ErrorKind;
use bloscar::codec::CodecError;
use bloscar::container::stream::{
    Record, SEGMENT_HEAD_LEN, SegmentSpec, StreamDecoder, encode_run, header_record,
};
use bloscar::container::{self, ContainerError, Limits};
use bytes::Bytes;
use proptest::prelude::*;

/// A message with a smooth FP32 tensor and a mask between protobuf-looking bytes, and
/// its run: header, plain, Blosc (lz4), plain, Blosc (zstd, bit-shuffle), plain.
fn sample() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut msg = b"\x0a\x05model\x3a\x80\x25".to_vec();
    msg.extend((0..600).flat_map(|i| (i as f32 * 0.05).sin().to_le_bytes()));
    msg.extend_from_slice(b"\x12\x03abc");
    msg.extend((0..700).map(|i| u8::from(i % 97 < 20)));
    msg.extend_from_slice(b"tail");
    let specs = [
        SegmentSpec::Plain(10),
        SegmentSpec::Blosc {
            len: 2400,
            typesize: 4,
            options: "lz4:5:byte".parse().unwrap(),
        },
        SegmentSpec::Plain(5),
        SegmentSpec::Blosc {
            len: 700,
            typesize: 1,
            options: "zstd:3:bit".parse().unwrap(),
        },
        SegmentSpec::Plain(4),
    ];
    let records = container::stream::encode_run(&msg, &specs).unwrap();
    (msg, records)
}

const LZ4: usize = 2;
const ZSTD: usize = 4;

/// Pushes `records` in order; the first error, else what `finish` says.
fn push_all(decoder: &mut StreamDecoder, records: &[Vec<u8>]) -> Result<Vec<u8>, ContainerError> {
    let mut out = Vec::new();
    for record in records {
        match decoder.push(Bytes::copy_from_slice(record))? {
            Record::Start { .. } => {}
            Record::Plain(bytes) => out.extend_from_slice(&bytes),
            Record::Blosc(job) | Record::Whole(job) => out.extend_from_slice(&job.run()?),
        }
    }
    decoder.finish()?;
    Ok(out)
}

fn decode(records: &[Vec<u8>]) -> Result<Vec<u8>, ContainerError> {
    push_all(&mut StreamDecoder::new(Limits::default()), records)
}

/// Recomputes a record's checksum, as a lying (rather than corrupted) sender would.
fn resign(record: &mut [u8]) {
    if record.starts_with(b"BLCR") {
        let crc = crc32fast::hash(&record[..16]);
        record[16..20].copy_from_slice(&crc.to_le_bytes());
    } else {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record[..8]);
        crc.update(&record[SEGMENT_HEAD_LEN..]);
        record[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
    }
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// The sample run with record `index` edited by `edit` and re-signed, then decoded.
fn lie(index: usize, edit: impl FnOnce(&mut Vec<u8>)) -> ContainerError {
    let (_, mut records) = sample();
    edit(&mut records[index]);
    resign(&mut records[index]);
    decode(&records).unwrap_err()
}

fn assert_error(err: ContainerError, expected: ContainerError, kind: ErrorKind) {
    assert_eq!(err, expected);
    assert_eq!(err.kind(), kind, "{err}");
}

#[test]
fn sample_round_trips() {
    let (msg, records) = sample();
    assert_eq!(decode(&records).unwrap(), msg);
}

#[test]
fn truncation_at_every_record_boundary_fails_finish() {
    let (msg, records) = sample();
    for cut in 1..records.len() {
        let restored: u64 = records[1..cut]
            .iter()
            .map(|r| u64::from(u32::from_le_bytes(r[4..8].try_into().unwrap())))
            .sum();
        let owed = msg.len() as u64 - restored;
        let mut decoder = StreamDecoder::new(Limits::default());
        let err = push_all(&mut decoder, &records[..cut]).unwrap_err();
        assert!(decoder.is_open());
        assert_eq!(decoder.owed(), owed);
        assert_error(
            err,
            ContainerError::StreamTruncated { owed },
            ErrorKind::DataLoss,
        );
    }
    // No record at all is an empty stream, which is fine.
    StreamDecoder::new(Limits::default()).finish().unwrap();
}

#[test]
fn truncation_inside_every_record_is_data_loss() {
    let (_, records) = sample();
    for (index, record) in records.iter().enumerate() {
        let mut decoder = StreamDecoder::new(Limits::default());
        for earlier in &records[..index] {
            decoder.push(Bytes::copy_from_slice(earlier)).unwrap();
        }
        for len in 0..record.len() {
            let err = decoder
                .clone()
                .push(Bytes::copy_from_slice(&record[..len]))
                .unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::DataLoss,
                "record {index} cut to {len}: {err}"
            );
        }
    }
}

#[test]
fn every_single_bit_flip_in_every_record_fails_its_checksum() {
    let (_, records) = sample();
    for (index, record) in records.iter().enumerate() {
        let mut decoder = StreamDecoder::new(Limits::default());
        for earlier in &records[..index] {
            decoder.push(Bytes::copy_from_slice(earlier)).unwrap();
        }
        let mut flipped = record.clone();
        for bit in 0..record.len() * 8 {
            flipped[bit / 8] ^= 1 << (bit % 8);
            let err = decoder
                .clone()
                .push(Bytes::copy_from_slice(&flipped))
                .unwrap_err();
            assert!(
                matches!(err, ContainerError::ChecksumMismatch { .. }),
                "record {index} bit {bit}: {err}"
            );
            assert_eq!(err.kind(), ErrorKind::DataLoss);
            flipped[bit / 8] ^= 1 << (bit % 8);
        }
    }
}

#[test]
fn lying_header_lengths_are_caught() {
    let (msg, records) = sample();
    let len = msg.len() as u64;
    // Shorter than the segments: the last segment would restore past the end.
    assert_error(
        lie(0, |r| put_u64(r, 8, len - 1)),
        ContainerError::SegmentOverrun {
            declared: 4,
            owed: 3,
        },
        ErrorKind::InvalidArgument,
    );
    // Longer than the segments: the stream ends with the container open.
    assert_error(
        lie(0, |r| put_u64(r, 8, len + 1)),
        ContainerError::StreamTruncated { owed: 1 },
        ErrorKind::DataLoss,
    );
    // Beyond the limit.
    for declared in [Limits::GRPC_MAX_MESSAGE as u64 + 1, u64::MAX] {
        assert_error(
            lie(0, |r| put_u64(r, 8, declared)),
            ContainerError::MessageTooLarge {
                declared,
                limit: Limits::GRPC_MAX_MESSAGE,
            },
            ErrorKind::ResourceExhausted,
        );
    }
    let tight = Limits {
        max_message_size: msg.len() - 1,
        ..Limits::default()
    };
    assert_error(
        push_all(&mut StreamDecoder::new(tight), &records).unwrap_err(),
        ContainerError::MessageTooLarge {
            declared: len,
            limit: msg.len() - 1,
        },
        ErrorKind::ResourceExhausted,
    );
}

#[test]
fn lying_segment_lengths_are_caught() {
    // A plain segment whose declared length is not its payload's.
    for declared in [9, 11] {
        assert_error(
            lie(1, |r| put_u32(r, 4, declared)),
            ContainerError::SegmentLengthMismatch {
                declared,
                payload: 10,
            },
            ErrorKind::InvalidArgument,
        );
    }
    // A Blosc segment whose declared length is not its chunk's.
    for declared in [2399, 2401] {
        assert_error(
            lie(LZ4, |r| put_u32(r, 4, declared)),
            ContainerError::SegmentData {
                source: CodecError::SizeMismatch {
                    expected: declared as usize,
                    actual: 2400,
                },
            },
            ErrorKind::DataLoss,
        );
    }
    // A chunk header whose nbytes is not the segment's length.
    assert_error(
        lie(ZSTD, |r| put_u32(r, SEGMENT_HEAD_LEN + 4, 699)),
        ContainerError::SegmentData {
            source: CodecError::SizeMismatch {
                expected: 700,
                actual: 699,
            },
        },
        ErrorKind::DataLoss,
    );
    // A segment that restores nothing.
    assert_error(
        lie(1, |r| put_u32(r, 4, 0)),
        ContainerError::EmptySegment,
        ErrorKind::InvalidArgument,
    );
}

#[test]
fn segment_restoring_more_than_the_header_says_is_refused_before_decompression() {
    let (_, mut records) = sample();
    put_u64(&mut records[0], 8, 100);
    resign(&mut records[0]);
    let mut decoder = StreamDecoder::new(Limits::default());
    decoder.push(Bytes::from(records[0].clone())).unwrap();
    decoder.push(Bytes::from(records[1].clone())).unwrap();
    assert_eq!(decoder.owed(), 90);
    let err = decoder.push(Bytes::from(records[LZ4].clone())).unwrap_err();
    assert_error(
        err,
        ContainerError::SegmentOverrun {
            declared: 2400,
            owed: 90,
        },
        ErrorKind::InvalidArgument,
    );
    // The decoder is as it was before the refused record.
    assert_eq!(decoder.owed(), 90);
}

#[test]
fn segment_above_the_segment_limit_is_resource_exhausted() {
    let (_, records) = sample();
    let tight = Limits {
        max_segment_len: 2399,
        ..Limits::default()
    };
    assert_error(
        push_all(&mut StreamDecoder::new(tight), &records).unwrap_err(),
        ContainerError::SegmentTooLarge {
            declared: 2400,
            limit: 2399,
        },
        ErrorKind::ResourceExhausted,
    );
}

#[test]
fn blosc_segment_must_be_exactly_one_chunk() {
    let (_, records) = sample();
    let chunk = &records[LZ4][SEGMENT_HEAD_LEN..];
    // Two chunks back to back, declared as their total.
    let mut doubled = records[LZ4][..SEGMENT_HEAD_LEN].to_vec();
    doubled.extend_from_slice(chunk);
    doubled.extend_from_slice(chunk);
    put_u32(&mut doubled, 4, 4800);
    resign(&mut doubled);
    let mut decoder = StreamDecoder::new(Limits::default());
    decoder
        .push(Bytes::from(header_record(10_000).to_vec()))
        .unwrap();
    assert_error(
        decoder.push(Bytes::from(doubled)).unwrap_err(),
        ContainerError::SegmentData {
            source: CodecError::InvalidChunk {
                offset: chunk.len(),
            },
        },
        ErrorKind::DataLoss,
    );
    // Not a chunk at all.
    let err = lie(LZ4, |r| {
        r[SEGMENT_HEAD_LEN..SEGMENT_HEAD_LEN + 16].copy_from_slice(b"definitely not!!")
    });
    assert!(matches!(err, ContainerError::SegmentData { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::DataLoss);
    // A chunk cut short (its cbytes runs past the payload).
    let err = lie(LZ4, |r| {
        r.pop();
    });
    assert_error(
        err,
        ContainerError::SegmentData {
            source: CodecError::InvalidChunk { offset: 0 },
        },
        ErrorKind::DataLoss,
    );
}

#[test]
fn unknown_kinds_versions_flags_and_reserved_bytes_are_invalid() {
    let cases = [
        (lie(1, |r| r[0] = 3), ContainerError::UnknownSegmentKind(3)),
        (lie(1, |r| r[0] = 0), ContainerError::UnknownSegmentKind(0)),
        (lie(LZ4, |r| r[2] = 1), ContainerError::ReservedBitsSet),
        (lie(0, |r| r[4] = 3), ContainerError::UnsupportedVersion(3)),
        (lie(0, |r| r[4] = 1), ContainerError::UnsupportedVersion(1)),
        (lie(0, |r| r[5] = 1), ContainerError::UnsupportedFlags(1)),
        (lie(0, |r| r[7] = 0x80), ContainerError::ReservedBitsSet),
    ];
    for (err, expected) in cases {
        assert_error(err, expected, ErrorKind::InvalidArgument);
    }
}

#[test]
fn header_inside_an_open_container_is_invalid() {
    let (msg, records) = sample();
    let v1 = container::encode(&msg, &[]).unwrap().bytes;
    for intruder in [records[0].clone(), header_record(0).to_vec(), v1] {
        let mut decoder = StreamDecoder::new(Limits::default());
        decoder.push(Bytes::from(records[0].clone())).unwrap();
        decoder.push(Bytes::from(records[1].clone())).unwrap();
        let owed = msg.len() as u64 - 10;
        assert_error(
            decoder.push(Bytes::from(intruder)).unwrap_err(),
            ContainerError::ContainerStillOpen { owed },
            ErrorKind::InvalidArgument,
        );
        assert_eq!(decoder.owed(), owed);
    }
}

#[test]
fn segment_outside_a_container_is_invalid() {
    let (_, records) = sample();
    let empty = header_record(0).to_vec();
    for stream in [
        vec![records[1].clone()],
        vec![records[LZ4].clone()],
        vec![empty.clone(), records[1].clone()],
        [records.clone(), vec![records[1].clone()]].concat(),
    ] {
        assert_error(
            decode(&stream).unwrap_err(),
            ContainerError::SegmentOutsideContainer,
            ErrorKind::InvalidArgument,
        );
    }
}

#[test]
fn version_1_containers_still_decode_between_runs() {
    let (msg, records) = sample();
    let v1 = container::encode(&msg, &[]).unwrap().bytes;
    let stream = [vec![v1.clone()], records.clone(), vec![v1]].concat();
    let mut decoder = StreamDecoder::new(Limits::default());
    let restored = push_all(&mut decoder, &stream).unwrap();
    assert_eq!(restored, [msg.clone(), msg.clone(), msg].concat());
}

#[test]
fn encoder_refuses_empty_and_uncovered_segments() {
    let opts = Default::default();
    for err in [
        container::stream::plain_segment_head(&[]).unwrap_err(),
        container::stream::blosc_segment(&[], 4, opts).unwrap_err(),
        encode_run(&[1, 2, 3], &[SegmentSpec::Plain(2)]).unwrap_err(),
        encode_run(&[1, 2, 3], &[SegmentSpec::Plain(3), SegmentSpec::Plain(0)]).unwrap_err(),
    ] {
        assert!(matches!(err, ContainerError::InvalidSpecs(_)), "{err}");
        assert_eq!(err.kind(), ErrorKind::Internal);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Random records, signed or not, inside a container or not, never panic and never
    /// restore more than the container declared.
    #[test]
    fn random_records_never_panic(
        mut record in prop::collection::vec(any::<u8>(), 0..200),
        sign in any::<bool>(),
        open in any::<bool>(),
        head in prop::sample::select(vec![&b"BLCR\x02\0\0\0"[..], b"\x01\0\0\0", b"\x02\0\0\0", b""]),
    ) {
        if record.len() >= 20 {
            record[..head.len()].copy_from_slice(head);
            if head.starts_with(b"BLCR") {
                record.truncate(20);
            }
        }
        if sign && record.len() >= SEGMENT_HEAD_LEN {
            resign(&mut record);
        }
        let mut decoder = StreamDecoder::new(Limits::default());
        if open {
            decoder.push(Bytes::from(header_record(150).to_vec())).unwrap();
        }
        if let Ok(Record::Plain(bytes)) = decoder.push(Bytes::from(record)) {
            prop_assert!(bytes.len() <= 150);
        }
    }

    /// Re-signed random edits of the sample run fail with a typed error or, when they
    /// only touch compressed bytes c-blosc cannot check, restore a message of the
    /// declared length; they never panic.
    #[test]
    fn resigned_edits_never_panic(
        index in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let (msg, mut records) = sample();
        let record = &mut records[index];
        for (at, value) in edits {
            let at = at.index(record.len());
            record[at] = value;
        }
        resign(record);
        if let Ok(restored) = decode(&records) {
            prop_assert_eq!(restored.len(), msg.len());
        }
    }
}
