//! Locator cost per message, beside a memcpy of the same message: one 4 MiB KServe
//! request, a KServe request of 64 small inputs, a TF Serving request of 16 tensors with
//! typed fields, and a tagged-rule message.

use std::hint::black_box;

use bloscar::locate::{Direction, KSERVE_MODEL_INFER, Locator, TF_SERVING_PREDICT, TaggedRule};
use bloscar::pb::bloscar::v1::NdArray;
use bloscar::pb::example::imaging::v1::{Band, DenoiseRequest};
use bloscar::pb::inference::{ModelInferRequest, model_infer_request::InferInputTensor};
use bloscar::pb::tensorflow::TensorProto;
use bloscar::pb::tensorflow::serving::PredictRequest;
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

criterion_group!(benches, bench);
criterion_main!(benches);
