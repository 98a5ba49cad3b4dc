//! StreamDecoder throughput on 1 MiB segments: a plain one (checksum only) and an lz4 one
//! (checksum, chunk header, decompression), in MB/s of restored bytes. The whole run is
//! decoded each time: its header record, then the segment.
//!
//! Times are the benchmark thread's CPU time (see `common`).

mod common;

use bloscar::Limits;
use bloscar::container::stream::{Record, SegmentSpec, StreamDecoder, encode_run};
use bytes::Bytes;
use common::cpu_iter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SEGMENT: usize = 1 << 20;

/// 256 Ki FP32 values: smooth waves, the kind of tensor bloscar compresses.
fn smooth() -> Vec<u8> {
    (0..SEGMENT / 4)
        .flat_map(|i| {
            let x = i as f32;
            (0.5 + 0.3 * (x / 37.0).sin() * (x / 5300.0).cos()).to_le_bytes()
        })
        .collect()
}

/// Decodes the run and returns the restored bytes' total, as a receiver would see them.
fn decode(records: &[Bytes]) -> usize {
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut restored = 0;
    for record in records {
        restored += match decoder.push(record.clone()).unwrap() {
            Record::Start { .. } => 0,
            Record::Plain(bytes) => bytes.len(),
            Record::Blosc(job) | Record::Whole(job) => job.run().unwrap().len(),
        };
    }
    decoder.finish().unwrap();
    restored
}

fn bench(c: &mut Criterion) {
    let data = smooth();
    let lz4 = SegmentSpec::Blosc {
        len: SEGMENT,
        typesize: 4,
        options: "lz4:5:byte".parse().unwrap(),
    };
    let mut group = c.benchmark_group("stream_decode");
    group.throughput(Throughput::Bytes(SEGMENT as u64));
    for (name, spec) in [
        ("plain_1MiB", SegmentSpec::Plain(SEGMENT)),
        ("lz4_1MiB", lz4),
    ] {
        let records: Vec<Bytes> = encode_run(&data, &[spec])
            .unwrap()
            .into_iter()
            .map(Bytes::from)
            .collect();
        eprintln!(
            "{name}: {} bytes of records for {SEGMENT} restored",
            records.iter().map(Bytes::len).sum::<usize>()
        );
        assert_eq!(decode(&records), SEGMENT);
        group.bench_function(name, |b| cpu_iter(b, || decode(&records)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
