//! Encode and decode of a 4 MiB FP32 KServe ModelInferRequest against the bare Blosc
//! calls and a memcpy of the same bytes. `scripts/bench-core.sh` prints the table.
//!
//! Times are the benchmark thread's CPU time, so that other load on the machine (a
//! shared CI runner, parallel builds) moves the figures as little as possible.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use bloscar::codec::{self, CompressOptions};
use bloscar::locate::{Direction, KSERVE_MODEL_INFER, Locator};
use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::{FixedChooser, Limits, MessageCodec};
use common::cpu_iter;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

const SIDE: usize = 1024;

/// A xorshift stream: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// 1024 × 1024 FP32: smooth gradients and waves plus a little sensor noise.
fn smooth_image() -> Vec<u8> {
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    (0..SIDE * SIDE)
        .flat_map(|i| {
            let (x, y) = ((i % SIDE) as f32, (i / SIDE) as f32);
            let v = 0.5 + 0.3 * (x / 37.0).sin() * (y / 53.0).cos() + 0.1 * (x + y) / 2048.0;
            (v + 0.01 * (noise.unit() - 0.5)).to_le_bytes()
        })
        .collect()
}

/// 2048 × 2048 UINT8 segmentation-like mask: a few filled discs on a background.
fn mask() -> Vec<u8> {
    let discs = [
        (400.0, 500.0, 300.0),
        (1500.0, 900.0, 250.0),
        (1000.0, 1700.0, 400.0),
    ];
    (0..4 * SIDE * SIDE)
        .map(|i| {
            let (x, y) = ((i % (2 * SIDE)) as f32, (i / (2 * SIDE)) as f32);
            let inside = discs
                .iter()
                .any(|&(cx, cy, r)| (x - cx).powi(2) + (y - cy).powi(2) < r * r);
            u8::from(inside)
        })
        .collect()
}

/// 1024 × 1024 FP32 uniform in [0, 1).
fn random() -> Vec<u8> {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    (0..SIDE * SIDE)
        .flat_map(|_| noise.unit().to_le_bytes())
        .collect()
}

/// A ModelInferRequest with one raw input, serialized by prost.
fn request(datatype: &str, shape: &[i64], data: Vec<u8>) -> Vec<u8> {
    ModelInferRequest {
        model_name: "segmenter".into(),
        model_version: "1".into(),
        id: "bench-0001".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            ..Default::default()
        }],
        raw_input_contents: vec![data],
        ..Default::default()
    }
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let side = SIDE as i64;
    let cases = [
        (
            "smooth",
            4,
            request("FP32", &[1, side, side], smooth_image()),
        ),
        (
            "mask",
            1,
            request("UINT8", &[1, 2 * side, 2 * side], mask()),
        ),
        ("random", 4, request("FP32", &[1, side, side], random())),
    ];
    let settings = ["lz4:5:byte", "zstd:1:byte", "blosclz:5:byte"];
    let locator = Locator::default();

    for (data, elem_size, msg) in &cases {
        let ranges = locator.locate(KSERVE_MODEL_INFER, Direction::Request, msg);
        assert_eq!(ranges.len(), 1, "the locator finds the raw input");
        let tensor = &msg[ranges[0].offset..ranges[0].offset + ranges[0].len];

        let mut group = c.benchmark_group(format!("core/{data}"));
        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_function("memcpy", |b| {
            let mut dst = vec![0u8; msg.len()];
            cpu_iter(b, || dst.copy_from_slice(black_box(msg)))
        });
        group.bench_function("crc32", |b| cpu_iter(b, || crc32fast::hash(black_box(msg))));

        for setting in settings {
            let options: CompressOptions = setting.parse().unwrap();
            let chooser = FixedChooser {
                options,
                min_size: 0,
            };
            let codec = MessageCodec::new(locator.clone(), Arc::new(chooser), Limits::default());
            // What the chooser applies: bit-shuffle for one-byte elements.
            let effective = options.for_elem_size(*elem_size);

            let mut packed = Vec::new();
            codec::compress(tensor, *elem_size, effective, &mut packed).unwrap();
            let container = codec
                .encode(KSERVE_MODEL_INFER, Direction::Request, msg)
                .unwrap()
                .expect("the tensor compresses")
                .bytes;
            eprintln!(
                "ratio {data} {setting} {:.3} {:.3}",
                tensor.len() as f64 / packed.len() as f64,
                msg.len() as f64 / container.len() as f64
            );

            group.bench_function(BenchmarkId::new("blosc_compress", setting), |b| {
                cpu_iter(b, || {
                    let mut out =
                        Vec::with_capacity(codec::compressed_bound(tensor.len(), *elem_size));
                    codec::compress(black_box(tensor), *elem_size, effective, &mut out).unwrap();
                    out
                })
            });
            group.bench_function(BenchmarkId::new("encode", setting), |b| {
                cpu_iter(b, || {
                    codec
                        .encode(KSERVE_MODEL_INFER, Direction::Request, black_box(msg))
                        .unwrap()
                })
            });
            group.bench_function(BenchmarkId::new("blosc_decompress", setting), |b| {
                cpu_iter(b, || {
                    let mut out = Vec::new();
                    codec::decompress_append(black_box(&packed), tensor.len(), &mut out).unwrap();
                    out
                })
            });
            group.bench_function(BenchmarkId::new("decode", setting), |b| {
                cpu_iter(b, || codec.decode(black_box(&container)).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
