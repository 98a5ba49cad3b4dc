//! The auto-tuner's steady-state cost per message beside the compression it chooses.
//!
//! Per tensor of the demo set: `choose_observe` is what the tuner adds to every message
//! once its pick is remembered (a cache lookup and the judgement of the measured
//! settings at the link rate in `choose`, the drift check in `observe`, the real-time
//! check in `observe_cost`); `compress` is Blosc compressing the tensor with that pick; `search` is one
//! full trial-compression search, which runs only for new keys and re-checks.
//! `scripts/bench-tuner.sh` prints the table.
//!
//! Times are the benchmark thread's CPU time, so that other load on the machine moves
//! the figures as little as possible.

mod common;

use std::hint::black_box;
use std::time::Duration;

use bloscar::bench::{Tensor, synthetic};
use bloscar::codec::tune::{Tuner, TunerConfig};
use bloscar::codec::{self, CompressOptions};
use bloscar::{Chooser, MessageCost, TensorInfo, TensorOutcome};
use common::cpu_iter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Link bandwidth the tuner optimises for in this benchmark, Mbit/s.
const LINK_MBPS: f64 = 1000.0;

fn info<'a>(name: &'a str, tensor: &Tensor) -> TensorInfo<'a> {
    TensorInfo {
        method: "/inference.GRPCInferenceService/ModelInfer",
        name,
        dtype: tensor.dtype,
        elem_size: tensor.elem_size,
        model: "resnet50:1",
        link_bytes_per_sec: Some(LINK_MBPS * 1e6 / 8.0),
        len: 0,
    }
}

fn bench(c: &mut Criterion) {
    for tensor in synthetic::demo_tensors() {
        // Several keys remembered, as in a sidecar serving several models.
        let tuner = Tuner::new(TunerConfig {
            recheck_every: u64::MAX,
            background: false,
            ..TunerConfig::default()
        });
        let names: Vec<String> = (0..16).map(|i| format!("{}_{i}", tensor.name)).collect();
        for name in &names {
            tuner.choose(&info(name, &tensor), &tensor.data);
        }
        let key = info(&names[7], &tensor);
        let pick = tuner.choose(&key, &tensor.data);
        let mut compressed = Vec::new();
        let outcome = pick.map(|options| {
            codec::compress(&tensor.data, tensor.elem_size, options, &mut compressed).unwrap();
            TensorOutcome {
                name: key.name.to_owned(),
                dtype: tensor.dtype,
                options,
                original_len: tensor.data.len(),
                compressed_len: compressed.len(),
                compress_time: Duration::from_millis(1),
            }
        });
        let cost = outcome.as_ref().map(|o| MessageCost {
            original_len: o.original_len,
            wire_len: o.compressed_len,
            compress_secs: o.compress_time.as_secs_f64(),
            peer_decompress_secs: None,
            link_bytes_per_sec: key.link_bytes_per_sec,
        });
        // The pick and the link go into the benchmark names, for the table.
        let setting = pick.map_or_else(|| "store".to_owned(), |o: CompressOptions| o.to_string());
        let mut group = c.benchmark_group(format!("tuner/{}/{setting}", tensor.name));
        group.throughput(Throughput::Bytes(tensor.data.len() as u64));

        group.bench_function("choose_observe", |b| {
            cpu_iter(b, || {
                let chosen = tuner.choose(black_box(&key), black_box(&tensor.data));
                if let (Some(outcome), Some(cost)) = (&outcome, &cost) {
                    tuner.observe(&key, outcome);
                    tuner.observe_cost(&key, cost);
                }
                chosen
            })
        });
        if let Some(options) = pick {
            group.bench_function("compress", |b| {
                cpu_iter(b, || {
                    compressed.clear();
                    codec::compress(
                        black_box(&tensor.data),
                        tensor.elem_size,
                        options,
                        &mut compressed,
                    )
                })
            });
        }
        group.bench_function("memcpy", |b| {
            let mut dst = vec![0u8; tensor.data.len()];
            cpu_iter(b, || dst.copy_from_slice(black_box(&tensor.data)))
        });
        group.sample_size(10);
        group.bench_function("search", |b| {
            cpu_iter(b, || {
                tuner.search(black_box(&tensor.data), tensor.elem_size)
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
