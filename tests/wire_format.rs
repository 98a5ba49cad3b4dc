//! The test vectors of docs/wire-format.md: the encoder produces exactly them, the
//! decoder restores the message, and the document shows the same bytes.

use bloscar::container::stream::{Record, SegmentSpec, StreamDecoder, encode_run};
use bloscar::container::{self, Limits, PatchSpec};
use bytes::Bytes;

struct Vector {
    message: &'static str,
    patches: &'static [(usize, usize, usize, &'static str)],
    container: &'static str,
}

const VECTORS: [Vector; 3] = [
    Vector {
        message: "0a 05 68 65 6c 6c 6f",
        patches: &[],
        container: "
            42 4c 43 52 01 00 00 00 00 00 00 00 07 00 00 00
            00 00 00 00 07 00 00 00 00 00 00 00 0a 05 68 65
            6c 6c 6f 2a 4f 6f 6f",
    },
    Vector {
        message: "0a 01 78 3a 10 00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40",
        patches: &[(5, 16, 4, "lz4:5:byte")],
        container: "
            42 4c 43 52 01 00 00 00 01 00 00 00 15 00 00 00
            00 00 00 00 05 00 00 00 00 00 00 00 05 00 00 00
            00 00 00 00 10 00 00 00 00 00 00 00 20 00 00 00
            00 00 00 00 04 00 00 00 01 05 01 00 0a 01 78 3a
            10 02 01 33 04 10 00 00 00 10 00 00 00 20 00 00
            00 00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80
            40 e7 95 56 30",
    },
    Vector {
        message: "", // built by `vector3_message`
        patches: &[(6, 256, 4, "blosclz:5:byte"), (264, 64, 1, "blosclz:9:bit")],
        container: "
            42 4c 43 52 01 00 00 00 02 00 00 00 48 01 00 00
            00 00 00 00 08 00 00 00 00 00 00 00 06 00 00 00
            00 00 00 00 00 01 00 00 00 00 00 00 74 00 00 00
            00 00 00 00 04 00 00 00 00 05 01 00 08 01 00 00
            00 00 00 00 40 00 00 00 00 00 00 00 50 00 00 00
            00 00 00 00 01 00 00 00 00 09 02 00 0a 01 78 3a
            80 02 3a 40 02 01 11 04 00 01 00 00 00 01 00 00
            74 00 00 00 14 00 00 00 5c 00 00 00 23 00 00 00
            00 e0 74 03 1f 80 00 40 80 a0 c0 e0 00 10 20 30
            40 50 60 70 80 88 90 98 a0 a8 b0 b8 c0 c8 d0 d8
            e0 e8 f0 f8 00 1f 04 08 0c 10 14 18 1c 20 24 28
            2c 30 34 38 3c 40 44 48 4c 50 54 58 5c 60 64 68
            6c 70 74 78 7c 00 01 3f 40 60 00 00 41 e0 0e 00
            00 42 e0 14 00 01 42 42 02 01 16 01 40 00 00 00
            40 00 00 00 50 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 01 01 01 01 01 01 01 01
            01 01 01 01 01 01 01 01 7d 0e 62 51",
    },
];

/// Field 1 = "x", field 7 = 64 FP32 values 0..63, field 7 = 48 zeros and 16 ones.
fn vector3_message() -> Vec<u8> {
    let mut msg = vec![0x0a, 0x01, b'x', 0x3a, 0x80, 0x02];
    msg.extend((0..64).flat_map(|i| (i as f32).to_le_bytes()));
    msg.extend([0x3a, 0x40]);
    msg.extend((0..64).map(|i| u8::from(i >= 48)));
    msg
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn message_of(vector: &Vector) -> Vec<u8> {
    if vector.message.is_empty() {
        vector3_message()
    } else {
        unhex(vector.message)
    }
}

fn specs_of(vector: &Vector) -> Vec<PatchSpec> {
    vector
        .patches
        .iter()
        .map(|&(offset, len, elem_size, options)| PatchSpec {
            offset,
            len,
            elem_size,
            options: options.parse().unwrap(),
        })
        .collect()
}

#[test]
fn encoder_produces_the_vectors_byte_for_byte() {
    for (i, vector) in VECTORS.iter().enumerate() {
        let encoded = container::encode(&message_of(vector), &specs_of(vector)).unwrap();
        assert_eq!(encoded.bytes, unhex(vector.container), "vector {}", i + 1);
    }
}

#[test]
fn decoder_restores_the_vector_messages() {
    for vector in &VECTORS {
        let decoded = container::decode(&unhex(vector.container), &Limits::default()).unwrap();
        assert_eq!(decoded, message_of(vector));
    }
}

#[test]
fn document_shows_the_same_bytes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/wire-format.md"))
        .unwrap();
    let doc_hex: String = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let spaced = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for vector in &VECTORS {
        assert!(doc_hex.contains(&spaced(&message_of(vector))));
        assert!(doc_hex.contains(&spaced(&unhex(vector.container))));
    }
}

/// A version-2 vector: the message's segments and the run as it travels (each record
/// with its 5-byte gRPC prefix).
struct RunVector {
    message: fn() -> Vec<u8>,
    segments: &'static [(usize, Option<(usize, &'static str)>)],
    run: &'static str,
}

const RUN_VECTORS: [RunVector; 2] = [
    RunVector {
        message: Vec::new,
        segments: &[],
        run: "
            01 00 00 00 14 42 4c 43 52 02 00 00 00 00 00 00
            00 00 00 00 00 da 84 5e 72",
    },
    RunVector {
        message: vector5_message,
        segments: &[(6, None), (256, Some((4, "blosclz:5:byte"))), (2, None)],
        run: "
            01 00 00 00 14 42 4c 43 52 02 00 00 00 08 01 00
            00 00 00 00 00 db 94 cc 07
            01 00 00 00 12 01 00 00 00 06 00 00 00 72 f3 ab
            8f 0a 01 78 3a 80 02
            01 00 00 00 80 02 00 00 00 00 01 00 00 f4 fb 67
            1d 02 01 11 04 00 01 00 00 00 01 00 00 74 00 00
            00 14 00 00 00 5c 00 00 00 23 00 00 00 00 e0 74
            03 1f 80 00 40 80 a0 c0 e0 00 10 20 30 40 50 60
            70 80 88 90 98 a0 a8 b0 b8 c0 c8 d0 d8 e0 e8 f0
            f8 00 1f 04 08 0c 10 14 18 1c 20 24 28 2c 30 34
            38 3c 40 44 48 4c 50 54 58 5c 60 64 68 6c 70 74
            78 7c 00 01 3f 40 60 00 00 41 e0 0e 00 00 42 e0
            14 00 01 42 42
            01 00 00 00 0e 01 00 00 00 02 00 00 00 84 80 45
            7c 10 01",
    },
];

/// Field 1 = "x", field 7 = 64 FP32 values 0..63, field 2 = varint 1.
fn vector5_message() -> Vec<u8> {
    let mut msg = vec![0x0a, 0x01, b'x', 0x3a, 0x80, 0x02];
    msg.extend((0..64).flat_map(|i| (i as f32).to_le_bytes()));
    msg.extend([0x10, 0x01]);
    msg
}

fn specs_of_run(vector: &RunVector) -> Vec<SegmentSpec> {
    vector
        .segments
        .iter()
        .map(|&(len, blosc)| match blosc {
            None => SegmentSpec::Plain(len),
            Some((typesize, options)) => SegmentSpec::Blosc {
                len,
                typesize,
                options: options.parse().unwrap(),
            },
        })
        .collect()
}

/// The records of a run as they travel: each with its gRPC prefix (flag 1, length BE).
fn framed(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        out.push(1);
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// The records of a framed run.
fn unframed(mut run: &[u8]) -> Vec<Bytes> {
    let mut records = Vec::new();
    while !run.is_empty() {
        assert_eq!(run[0], 1);
        let len = u32::from_be_bytes(run[1..5].try_into().unwrap()) as usize;
        records.push(Bytes::copy_from_slice(&run[5..5 + len]));
        run = &run[5 + len..];
    }
    records
}

#[test]
fn stream_encoder_produces_the_run_vectors_byte_for_byte() {
    for (i, vector) in RUN_VECTORS.iter().enumerate() {
        let records = encode_run(&(vector.message)(), &specs_of_run(vector)).unwrap();
        assert_eq!(framed(&records), unhex(vector.run), "vector {}", i + 4);
    }
}

#[test]
fn stream_decoder_restores_the_run_vector_messages() {
    for vector in &RUN_VECTORS {
        let mut decoder = StreamDecoder::new(Limits::default());
        let mut restored = Vec::new();
        for record in unframed(&unhex(vector.run)) {
            match decoder.push(record).unwrap() {
                Record::Start { restored_len } => {
                    assert_eq!(restored_len, (vector.message)().len() as u64)
                }
                Record::Plain(bytes) => restored.extend_from_slice(&bytes),
                Record::Blosc(job) => restored.extend_from_slice(&job.run().unwrap()),
                Record::Whole(_) => panic!("a version-2 run holds no version-1 container"),
            }
        }
        decoder.finish().unwrap();
        assert_eq!(restored, (vector.message)());
    }
}

#[test]
fn document_shows_the_same_runs() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/wire-format.md"))
        .unwrap();
    let doc_hex: String = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let spaced = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for vector in &RUN_VECTORS {
        let message = format!("```message {} ```", spaced(&(vector.message)()));
        let message = message.replace("  ", " ");
        assert!(doc_hex.contains(&message), "{message}");
        assert!(doc_hex.contains(&format!("```run {} ```", spaced(&unhex(vector.run)))));
    }
}

const NDARRAY_VECTOR: &str = "
    42 4c 4e 44 01 0c 02 00 18 00 00 00 00 00 00 00
    02 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00
    02 01 33 04 18 00 00 00 18 00 00 00 28 00 00 00
    00 00 00 00 00 00 80 3f 00 00 00 40 00 00 40 40
    00 00 80 40 00 00 a0 40 11 a2 13 d6";

#[test]
fn ndarray_vector_round_trips() {
    use bloscar::DType;
    use bloscar::ndarray::{compress_ndarray, decompress_ndarray};
    let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let frame =
        compress_ndarray(&data, DType::F32, &[2, 3], "lz4:5:byte".parse().unwrap()).unwrap();
    assert_eq!(frame, unhex(NDARRAY_VECTOR));
    let array = decompress_ndarray(&frame, &Limits::default()).unwrap();
    assert_eq!(
        (array.dtype, array.shape, array.data),
        (DType::F32, vec![2, 3], data)
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/wire-format.md"))
        .unwrap();
    let doc_hex = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let vector_hex = NDARRAY_VECTOR
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(doc_hex.contains(&vector_hex));
}

/// The Python decoder printed in the document, run with python-blosc on the document's
/// vectors (the environment comes from scripts/venvs.sh).
#[test]
fn python_decoder_in_the_document_decodes_the_vectors() {
    use std::process::Command;
    let root = env!("CARGO_MANIFEST_DIR");
    let venvs = Command::new("bash")
        .arg(format!("{root}/scripts/venvs.sh"))
        .status()
        .unwrap();
    assert!(venvs.success(), "scripts/venvs.sh failed");
    let out = Command::new(format!("{root}/.venvs/blosc/bin/python"))
        .arg(format!("{root}/scripts/check-wire-format.py"))
        .arg(format!("{root}/docs/wire-format.md"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
