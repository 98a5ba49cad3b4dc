//! Locator cost per message, beside a memcpy of the same message: one 4 MiB KServe
//! request, a KServe request of 64 small inputs, a TF Serving request of 16 tensors with
//! typed fields, and a tagged-rule message.
//!
//! The streaming walk (`Locator::stream`) fed 64 KiB chunks, as a proxy receives them,
//! beside the whole-message locator: a 16 MiB KServe request, the 64-input request and
//! the TF Serving request. These are timed on the thread's CPU time.

mod common;

use std::hint::black_box;

use bloscar::locate::{Direction, KSERVE_MODEL_INFER, Locator, TF_SERVING_PREDICT, TaggedRule};
use bloscar::pb::bloscar::v1::NdArray;
use bloscar::pb::example::imaging::v1::{Band, DenoiseRequest};
use bloscar::pb::inference::{ModelInferRequest, model_infer_request::InferInputTensor};
use bloscar::pb::tensorflow::TensorProto;
use bloscar::pb::tensorflow::serving::PredictRequest;
use common::cpu_iter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

fn kserve(inputs: usize, bytes_each: usize) -> Vec<u8> {
    let mut req = ModelInferRequest {
        model_name: "model".into(),
        ..Default::default()
    };
    for i in 0..inputs {
        req.inputs.push(InferInputTensor {
            name: format!("input_{i}"),
            datatype: "FP32".into(),
            shape: vec![1, (bytes_each / 4) as i64],
            ..Default::default()
        });
        req.raw_input_contents.push(vec![i as u8; bytes_each]);
    }
    req.encode_to_vec()
}

fn tf_serving() -> Vec<u8> {
    let mut req = PredictRequest::default();
    for i in 0..16 {
        let proto = TensorProto {
            dtype: 1,
            float_val: vec![i as f32; 4096],
            ..Default::default()
        };
        req.inputs.insert(format!("t{i:02}"), proto);
    }
    req.encode_to_vec()
}

fn tagged() -> Vec<u8> {
    DenoiseRequest {
        request_id: "r".into(),
        image: Some(NdArray {
            dtype: 12,
            shape: vec![512, 512],
            data: vec![7; 1 << 20],
        }),
        bands: (0..8)
            .map(|i| Band {
                name: format!("band{i}"),
                dtype: "float32".into(),
                data: vec![i; 65536],
                tf_dtype: 1,
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let rules = TaggedRule::parse_list(
        "/example.imaging.v1.Imaging/Denoise=2;\
         /example.imaging.v1.Imaging/Denoise@request=3.3:dtype=2:name=1",
    )
    .expect("valid rules");
    let cases = [
        (
            "kserve_4MiB_1_input",
            Locator::default(),
            KSERVE_MODEL_INFER,
            kserve(1, 4 << 20),
        ),
        (
            "kserve_64_inputs",
            Locator::default(),
            KSERVE_MODEL_INFER,
            kserve(64, 4096),
        ),
        (
            "tfserving_16_float_val",
            Locator::default(),
            TF_SERVING_PREDICT,
            tf_serving(),
        ),
        (
            "tagged_ndarray_and_8_bands",
            Locator::new(rules),
            "/example.imaging.v1.Imaging/Denoise",
            tagged(),
        ),
    ];
    let mut group = c.benchmark_group("locate");
    for (name, locator, method, msg) in &cases {
        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_function(format!("{name}/locate"), |b| {
            b.iter(|| locator.locate(method, Direction::Request, black_box(msg)))
        });
        group.bench_function(format!("{name}/memcpy"), |b| {
            b.iter(|| black_box(msg).to_vec())
        });
    }
    group.finish();
}

/// Chunks a proxy hands over at a time.
const CHUNK: usize = 64 << 10;

fn bench_stream(c: &mut Criterion) {
    let locator = Locator::default();
    let cases = [
        (
            "kserve_16MiB_1_input",
            KSERVE_MODEL_INFER,
            kserve(1, 16 << 20),
        ),
        ("kserve_64_inputs", KSERVE_MODEL_INFER, kserve(64, 4096)),
        ("tfserving_16_float_val", TF_SERVING_PREDICT, tf_serving()),
    ];
    let mut group = c.benchmark_group("locate_stream");
    for (name, method, msg) in &cases {
        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_function(format!("{name}/locate"), |b| {
            cpu_iter(b, || {
                locator
                    .locate(method, Direction::Request, black_box(msg))
                    .len()
            })
        });
        group.bench_function(format!("{name}/stream_64KiB"), |b| {
            let mut spans = Vec::new();
            cpu_iter(b, || {
                let mut walk = locator
                    .stream(method, Direction::Request, msg.len())
                    .expect("a built-in protocol streams");
                for chunk in black_box(msg).chunks(CHUNK) {
                    walk.feed(chunk, &mut spans);
                    spans.clear();
                }
                walk.model().is_some()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_group! {
    name = stream;
    config = common::criterion();
    targets = bench_stream
}
criterion_main!(benches, stream);
