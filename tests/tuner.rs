//! The auto-tuner through the `Chooser` interface the message codec calls: what it
//! stores, what it remembers, when it looks again, and what it reports.

mod arrays;

use std::sync::Arc;
use std::time::Duration;

use bloscar::bench::synthetic;
use bloscar::codec::tune::{Tuner, TunerConfig};
use bloscar::metrics::Metrics;
use bloscar::{Chooser, DType, TensorInfo, TensorOutcome, npy};

const LINKS: [f64; 3] = [100.0, 1000.0, 10_000.0];

fn info<'a>(name: &'a str, dtype: DType, elem_size: usize) -> TensorInfo<'a> {
    TensorInfo {
        method: "/inference.GRPCInferenceService/ModelInfer",
        name,
        dtype,
        elem_size,
    }
}

#[test]
fn stores_random_bytes_on_every_link() {
    let data = synthetic::random_bytes(4 << 20, 11);
    for link in LINKS {
        for (dtype, elem) in [(DType::U8, 1), (DType::F32, 4), (DType::F64, 8)] {
            let tuner = Tuner::new(TunerConfig::with_link_mbps(link));
            assert_eq!(
                tuner.choose(&info("noise", dtype, elem), &data),
                None,
                "{link} Mbit/s, {dtype}"
            );
            assert_eq!(tuner.stats().store_decisions, 1);
        }
    }
}

#[test]
fn stores_jpeg_bytes_on_every_link() {
    for file in ["images/astronaut_jpeg.npy", "images/coffee_jpeg.npy"] {
        let bytes = arrays::read(file);
        let jpeg = npy::parse(&bytes).unwrap();
        assert_eq!(jpeg.dtype, DType::U8);
        assert_eq!(
            &jpeg.data[..3],
            &[0xff, 0xd8, 0xff],
            "{file} holds a JPEG stream"
        );
        for link in LINKS {
            let tuner = Tuner::new(TunerConfig::with_link_mbps(link));
            let pick = tuner.choose(&info("image_bytes", DType::U8, 1), jpeg.data);
            assert_eq!(pick, None, "{file} at {link} Mbit/s");
        }
    }
}

#[test]
fn compresses_a_segmentation_mask_on_a_slow_link() {
    // Storing a 1 MB mask takes 84 ms at 100 Mbit/s; any codec shrinks it ~100x in a
    // millisecond, so the decision does not hinge on timing.
    let mask = synthetic::segmentation_mask();
    let tuner = Tuner::new(TunerConfig::with_link_mbps(100.0));
    assert!(
        tuner
            .choose(&info("mask", DType::U8, 1), &mask.data)
            .is_some()
    );
}

#[test]
fn leaves_small_tensors_alone_without_searching() {
    let tuner = Tuner::new(TunerConfig::default());
    let small = vec![0u8; TunerConfig::default().min_size - 1];
    assert_eq!(tuner.choose(&info("small", DType::U8, 1), &small), None);
    let s = tuner.stats();
    assert_eq!((s.below_min_size, s.searches_new, s.entries), (1, 0, 0));
}

#[test]
fn remembers_per_key_and_rechecks_every_n_messages() {
    let tuner = Tuner::new(TunerConfig {
        recheck_every: 3,
        search_budget: 0.0,
        ..TunerConfig::with_link_mbps(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    let first = tuner.choose(&t, &mask.data);
    assert!(first.is_some());
    assert_eq!(tuner.stats().searches_new, 1);
    // Messages 1 and 2 after the search come from the cache; the third is re-checked.
    for _ in 0..2 {
        tuner.choose(&t, &mask.data);
    }
    let s = tuner.stats();
    assert_eq!((s.cache_hits, s.searches_periodic), (2, 0));
    tuner.choose(&t, &mask.data);
    assert_eq!(tuner.stats().searches_periodic, 1);
    for _ in 0..3 {
        tuner.choose(&t, &mask.data);
    }
    let s = tuner.stats();
    assert_eq!(
        (s.searches_new, s.searches_periodic, s.cache_hits),
        (1, 2, 4)
    );

    // The same tensor name under another dtype or method is another key.
    tuner.choose(&info("mask", DType::I8, 1), &mask.data);
    let other = TensorInfo {
        method: "/tensorflow.serving.PredictionService/Predict",
        ..t
    };
    tuner.choose(&other, &mask.data);
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.entries), (3, 3));
    let picks = tuner.picks();
    assert_eq!(picks.len(), 3);
    assert!(
        picks
            .iter()
            .all(|p| p.name == "mask" && p.options.is_some() && p.sample_ratio > 10.0)
    );
}

#[test]
fn spaces_rechecks_so_searching_stays_within_budget() {
    // A mask costs about a millisecond end to end at 100 Mbit/s while a search costs
    // several: with a 1% budget the next search is thousands of messages away.
    let tuner = Tuner::new(TunerConfig {
        recheck_every: 3,
        ..TunerConfig::with_link_mbps(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    for _ in 0..10 {
        tuner.choose(&t, &mask.data);
    }
    let s = tuner.stats();
    assert_eq!(
        (s.searches_new, s.searches_periodic, s.cache_hits),
        (1, 0, 9)
    );
}

#[test]
fn searches_again_when_the_ratio_drifts() {
    let tuner = Tuner::new(TunerConfig::with_link_mbps(100.0));
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    let options = tuner.choose(&t, &mask.data).unwrap();
    let outcome = |compressed_len| TensorOutcome {
        name: "mask".into(),
        dtype: DType::U8,
        options,
        original_len: mask.data.len(),
        compressed_len,
        compress_time: Duration::from_micros(100),
    };
    // The first outcome sets the reference; a 10% change is within the threshold.
    tuner.observe(&t, &outcome(10_000));
    tuner.observe(&t, &outcome(11_000));
    tuner.choose(&t, &mask.data);
    assert_eq!(tuner.stats().searches_drift, 0);
    // The tensors now compress four times less well: the next message is searched again.
    tuner.observe(&t, &outcome(40_000));
    tuner.choose(&t, &mask.data);
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.searches_drift, s.cache_hits), (1, 1, 1));
    // Outcomes of another setting (a fixed chooser's, say) are not the tuner's concern.
    let mut foreign = outcome(1);
    foreign.options.level = if options.level == 9 { 1 } else { 9 };
    tuner.observe(&t, &foreign);
    tuner.choose(&t, &mask.data);
    assert_eq!(tuner.stats().searches_drift, 1);
}

#[test]
fn shows_its_decisions_in_the_sidecar_metrics() {
    let tuner = Arc::new(Tuner::new(TunerConfig::with_link_mbps(100.0)));
    let mut metrics = Metrics::new();
    metrics.register_collector(Box::new(tuner.collector()));
    let mask = synthetic::segmentation_mask();
    let noise = synthetic::random_bytes(1 << 20, 5);
    tuner.choose(&info("mask", DType::U8, 1), &mask.data);
    tuner.choose(&info("mask", DType::U8, 1), &mask.data);
    tuner.choose(&info("noise", DType::U8, 1), &noise);
    let text = metrics.render();
    for line in [
        "bloscar_tuner_searches_total{reason=\"new\"} 2",
        "bloscar_tuner_searches_total{reason=\"drift\"} 0",
        "bloscar_tuner_cache_hits_total 1",
        "bloscar_tuner_store_decisions_total 1",
        "bloscar_tuner_entries 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    let pick = tuner
        .picks()
        .into_iter()
        .find(|p| p.name == "mask")
        .unwrap()
        .options
        .unwrap();
    let mask_line = format!(
        "bloscar_tuner_pick_sample_ratio{{method=\"/inference.GRPCInferenceService/ModelInfer\",tensor=\"mask\",dtype=\"uint8\",codec=\"{}\",level=\"{}\",shuffle=\"{}\"}}",
        pick.codec, pick.level, pick.shuffle
    );
    assert!(
        text.contains(&mask_line),
        "{mask_line} missing from:\n{text}"
    );
    assert!(
        text.contains("tensor=\"noise\",dtype=\"uint8\",codec=\"store\""),
        "{text}"
    );
    assert!(
        text.contains("# TYPE bloscar_tuner_search_seconds counter"),
        "{text}"
    );
}

#[test]
fn stores_an_empty_tensor_when_there_is_no_minimum_size() {
    let tuner = Tuner::new(TunerConfig {
        min_size: 0,
        ..TunerConfig::default()
    });
    assert_eq!(tuner.choose(&info("empty", DType::F32, 4), &[]), None);
    assert_eq!(tuner.stats().store_decisions, 1);
}

#[test]
fn serves_many_threads_at_once() {
    let tuner = Tuner::new(TunerConfig {
        recheck_every: 20,
        search_budget: 0.0,
        ..TunerConfig::with_link_mbps(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let names = ["a", "b", "c", "d"];
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (tuner, mask) = (&tuner, &mask);
            s.spawn(move || {
                for i in 0..50 {
                    let t = info(names[(thread + i) % names.len()], DType::U8, 1);
                    assert!(tuner.choose(&t, &mask.data).is_some());
                }
            });
        }
    });
    let s = tuner.stats();
    // Every call was answered either from the cache or by a search.
    let searches = s.searches_new + s.searches_periodic + s.searches_drift;
    assert_eq!(s.cache_hits + searches, 200);
    assert!(s.searches_new >= 4, "{s:?}");
    assert!(s.searches_periodic >= 1, "{s:?}");
    assert_eq!(s.entries, 4);
}
