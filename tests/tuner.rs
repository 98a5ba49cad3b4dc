//! The auto-tuner through the `Chooser` interface the message codec calls: what it
//! stores, what it remembers per model, when it looks again, how it follows the link,
//! what it learns from real costs, and what it reports.

mod arrays;

use std::sync::Arc;
use std::time::Duration;

use bloscar::bench::synthetic;
use bloscar::codec::tune::{MAX_MODEL_LABELS, OTHER_MODEL, Tuner, TunerConfig};
use bloscar::metrics::Metrics;
use bloscar::{Chooser, DType, MessageCost, TensorInfo, TensorOutcome, npy};

const LINKS: [f64; 3] = [100.0, 1000.0, 10_000.0];
const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

fn info<'a>(name: &'a str, dtype: DType, elem_size: usize) -> TensorInfo<'a> {
    TensorInfo {
        method: INFER,
        name,
        dtype,
        elem_size,
        model: "",
        link_bytes_per_sec: None,
        len: 0,
    }
}

/// A tuner that searches in `choose` itself, with the link fixed at `link_mbps`.
fn inline(link_mbps: f64) -> TunerConfig {
    TunerConfig {
        background: false,
        ..TunerConfig::with_link_mbps(link_mbps)
    }
}

/// Bytes per second of `mbps` Mbit/s.
fn rate(mbps: f64) -> f64 {
    mbps * 1e6 / 8.0
}

#[test]
fn stores_random_bytes_on_every_link() {
    let data = synthetic::random_bytes(4 << 20, 11);
    for link in LINKS {
        for (dtype, elem) in [(DType::U8, 1), (DType::F32, 4), (DType::F64, 8)] {
            let tuner = Tuner::new(inline(link));
            assert_eq!(
                tuner.choose(&info("noise", dtype, elem), &data),
                None,
                "{link} Mbit/s, {dtype}"
            );
            let s = tuner.stats();
            assert_eq!((s.searches_new, s.choices.stored), (1, 1));
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
            let tuner = Tuner::new(inline(link));
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
    let tuner = Tuner::new(inline(100.0));
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
    tuner.wait_idle();
    let s = tuner.stats();
    assert_eq!((s.below_min_size, s.searches_new, s.entries), (1, 0, 0));
}

#[test]
fn two_models_sharing_a_tensor_name_get_their_own_pick() {
    // A real photograph (smooth, compressible at 100 Mbit/s) and random bytes of the
    // same size, both sent as INPUT0 UINT8 through ModelInfer.
    let bytes = arrays::read("images/camera_u8.npy");
    let camera = npy::parse(&bytes).unwrap();
    let noise = synthetic::random_bytes(camera.data.len(), 3);
    let tuner = Tuner::new(TunerConfig::with_link_mbps(100.0));
    let photo = TensorInfo {
        model: "segmenter:1",
        ..info("INPUT0", DType::U8, 1)
    };
    let encrypted = TensorInfo {
        model: "decryptor:2",
        ..photo
    };
    // Nothing is measured yet: both are stored at once while the searches run.
    assert_eq!(tuner.choose(&photo, camera.data), None);
    assert_eq!(tuner.choose(&encrypted, &noise), None);
    tuner.wait_idle();
    assert!(tuner.choose(&photo, camera.data).is_some());
    assert_eq!(tuner.choose(&encrypted, &noise), None);

    let s = tuner.stats();
    assert_eq!((s.searches_new, s.entries), (2, 2));
    assert_eq!(
        (
            s.choices.provisional,
            s.choices.compressed,
            s.choices.stored
        ),
        (2, 1, 1)
    );
    let picks = tuner.picks();
    let pick = |model: &str| picks.iter().find(|p| p.model == model).unwrap();
    assert!(pick("segmenter:1").options.is_some());
    assert!(pick("segmenter:1").sample_ratio > 1.2);
    assert_eq!(pick("decryptor:2").options, None);
    assert!(picks.iter().all(|p| p.name == "INPUT0" && p.measured));
    let by_model = tuner.choices_by_model();
    let choices = |model: &str| by_model.iter().find(|m| m.model == model).unwrap().choices;
    assert_eq!(choices("segmenter:1").compressed, 1);
    assert_eq!(choices("decryptor:2").stored, 1);
}

#[test]
fn answers_at_once_and_uses_the_background_result_when_it_is_done() {
    let tuner = Tuner::new(TunerConfig::with_link_mbps(100.0));
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    // Provisional: stored, and the search queued rather than run here.
    assert_eq!(tuner.choose(&t, &mask.data), None);
    tuner.wait_idle();
    assert_eq!(tuner.stats().searches_new, 1);
    let pick = tuner.choose(&t, &mask.data);
    assert!(pick.is_some());
    let s = tuner.stats();
    assert_eq!(
        (s.choices.provisional, s.choices.compressed, s.searches()),
        (1, 1, 1)
    );
}

#[test]
fn stores_until_a_link_rate_is_known_then_follows_the_link_without_searching() {
    let tuner = Tuner::new(TunerConfig {
        background: false,
        ..TunerConfig::default()
    });
    let mask = synthetic::segmentation_mask();
    let cold = info("mask", DType::U8, 1);
    // Cold start: measured (the search ran), but no rate to judge it at.
    assert_eq!(tuner.choose(&cold, &mask.data), None);
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.choices.cold_start), (1, 1));
    assert!(tuner.picks()[0].measured);

    // The receiving side has measured the link: 100 Mbit/s.
    let slow = TensorInfo {
        link_bytes_per_sec: Some(rate(100.0)),
        ..cold
    };
    assert!(tuner.choose(&slow, &mask.data).is_some());
    // A link far faster than any codec: storing wins, with no new search.
    let fast = TensorInfo {
        link_bytes_per_sec: Some(1e13),
        ..cold
    };
    assert_eq!(tuner.choose(&fast, &mask.data), None);
    // Back on the slow link.
    assert!(tuner.choose(&slow, &mask.data).is_some());
    let s = tuner.stats();
    assert_eq!(s.searches(), 1);
    assert_eq!(
        (s.choices.compressed, s.choices.stored, s.choices.cold_start),
        (2, 1, 1)
    );
}

#[test]
fn a_configured_link_rate_overrides_the_measured_one() {
    let mask = synthetic::segmentation_mask();
    let t = TensorInfo {
        link_bytes_per_sec: Some(1e13),
        ..info("mask", DType::U8, 1)
    };
    let measured = Tuner::new(TunerConfig {
        background: false,
        ..TunerConfig::default()
    });
    assert_eq!(measured.choose(&t, &mask.data), None);
    let overridden = Tuner::new(inline(100.0));
    assert!(overridden.choose(&t, &mask.data).is_some());
}

#[test]
fn remembers_per_key_and_rechecks_every_n_messages() {
    let tuner = Tuner::new(TunerConfig {
        recheck_every: 3,
        search_budget: 0.0,
        ..inline(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    let first = tuner.choose(&t, &mask.data);
    assert!(first.is_some());
    assert_eq!(tuner.stats().searches_new, 1);
    // Messages 1 and 2 after the search are answered from the cache; the third is
    // re-checked.
    for _ in 0..2 {
        tuner.choose(&t, &mask.data);
    }
    assert_eq!(tuner.stats().searches_periodic, 0);
    tuner.choose(&t, &mask.data);
    assert_eq!(tuner.stats().searches_periodic, 1);
    for _ in 0..3 {
        tuner.choose(&t, &mask.data);
    }
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.searches_periodic), (1, 2));
    assert_eq!(s.choices.compressed, 7);

    // The same tensor name under another dtype, method or model is another key.
    tuner.choose(&info("mask", DType::I8, 1), &mask.data);
    let other_method = TensorInfo {
        method: "/tensorflow.serving.PredictionService/Predict",
        ..t
    };
    tuner.choose(&other_method, &mask.data);
    let other_model = TensorInfo {
        model: "unet:3",
        ..t
    };
    tuner.choose(&other_model, &mask.data);
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.entries), (4, 4));
    let picks = tuner.picks();
    assert_eq!(picks.len(), 4);
    assert!(
        picks
            .iter()
            .all(|p| p.name == "mask" && p.options.is_some() && p.sample_ratio > 10.0)
    );
}

#[test]
fn stored_keys_are_probed_again_like_any_other() {
    let tuner = Tuner::new(TunerConfig {
        recheck_every: 3,
        search_budget: 0.0,
        ..inline(1000.0)
    });
    let noise = synthetic::random_bytes(1 << 20, 9);
    let t = info("noise", DType::U8, 1);
    for _ in 0..7 {
        assert_eq!(tuner.choose(&t, &noise), None);
    }
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.searches_periodic), (1, 2));
    assert_eq!(s.choices.stored, 7);
}

#[test]
fn spaces_rechecks_so_searching_stays_within_budget() {
    // Compressing a mask with the cheapest setting takes well under a millisecond while
    // a search takes several: with a 1% budget the next search is thousands of messages
    // away.
    let tuner = Tuner::new(TunerConfig {
        recheck_every: 3,
        ..inline(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    for _ in 0..10 {
        tuner.choose(&t, &mask.data);
    }
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.searches_periodic), (1, 0));
    assert_eq!(s.choices.compressed, 10);
}

#[test]
fn searches_again_when_the_ratio_drifts() {
    let tuner = Tuner::new(inline(100.0));
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
    assert_eq!((s.searches_new, s.searches_drift), (1, 1));
    // Outcomes of a setting the search did not measure are not the tuner's concern.
    let mut foreign = outcome(1);
    foreign.options.level = 0;
    tuner.observe(&t, &foreign);
    tuner.choose(&t, &mask.data);
    assert_eq!(tuner.stats().searches_drift, 1);
}

#[test]
fn a_search_budget_bounds_searches_when_new_keys_keep_coming() {
    // One search per 1000 s: the burst is a single search, and the test cannot run long
    // enough to earn a second.
    let tuner = Tuner::new(TunerConfig {
        searches_per_sec: 0.001,
        ..TunerConfig::with_link_mbps(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let names: Vec<String> = (0..10).map(|i| format!("request_{i}")).collect();
    for name in &names {
        assert_eq!(tuner.choose(&info(name, DType::U8, 1), &mask.data), None);
    }
    tuner.wait_idle();
    let s = tuner.stats();
    assert_eq!((s.searches_new, s.searches_skipped_budget), (1, 9));
    assert_eq!(s.choices.provisional, 10);
    // The searched key is compressed; the others stay provisional and ask again.
    assert!(
        tuner
            .choose(&info(&names[0], DType::U8, 1), &mask.data)
            .is_some()
    );
    assert_eq!(
        tuner.choose(&info(&names[1], DType::U8, 1), &mask.data),
        None
    );
    assert_eq!(tuner.stats().searches_skipped_budget, 10);
}

#[test]
fn searches_dropped_from_a_full_queue_are_retried_on_later_messages() {
    let tuner = Tuner::new(TunerConfig {
        search_queue: 1,
        searches_per_sec: 0.0,
        ..TunerConfig::with_link_mbps(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let names: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    let mut rounds = 0;
    while tuner.picks().iter().filter(|p| p.measured).count() < names.len() {
        rounds += 1;
        assert!(rounds <= names.len(), "{:?}", tuner.stats());
        for name in &names {
            tuner.choose(&info(name, DType::U8, 1), &mask.data);
        }
        tuner.wait_idle();
    }
    let s = tuner.stats();
    // Every key was searched exactly once; every other attempt found the queue full.
    assert_eq!(s.searches_new, 6);
    let attempts = s.choices.provisional;
    assert_eq!(attempts, s.searches_new + s.searches_skipped_queue_full);
}

#[test]
fn falls_back_to_storing_when_real_messages_do_not_pay_and_retries_after_a_backoff() {
    let tuner = Tuner::new(TunerConfig {
        fallback_backoff: 4,
        fallback_backoff_max: 8,
        ..inline(100.0)
    });
    let mask = synthetic::segmentation_mask();
    let t = info("mask", DType::U8, 1);
    let len = mask.data.len();
    let store_secs = len as f64 / rate(100.0);
    // What a message really cost: `compress_secs` of wall clock on this side.
    let cost = |compress_secs: f64| MessageCost {
        original_len: len,
        wire_len: len / 50,
        compress_secs,
        peer_decompress_secs: Some(0.001),
        link_bytes_per_sec: Some(rate(100.0)),
    };
    let slow = cost(store_secs * 2.0);
    let fine = cost(store_secs / 50.0);

    assert!(tuner.choose(&t, &mask.data).is_some());
    // One bad message among good ones changes nothing.
    for c in [&slow, &fine, &fine, &slow, &fine] {
        tuner.observe_cost(&t, c);
    }
    assert!(tuner.choose(&t, &mask.data).is_some());
    assert_eq!(tuner.stats().fallbacks, 0);
    // The machine is overloaded: three of the last four messages cost more than storing.
    for _ in 0..3 {
        tuner.observe_cost(&t, &slow);
    }
    assert_eq!(tuner.stats().fallbacks, 1);
    let stored_run = |tuner: &Tuner| {
        let mut stored = 0;
        while tuner.choose(&t, &mask.data).is_none() {
            stored += 1;
            assert!(stored <= 100);
        }
        stored
    };
    // The next 4 messages are stored, then compression is tried again.
    assert_eq!(stored_run(&tuner), 4);
    // Still too slow: the backoff doubles, up to its cap.
    for _ in 0..3 {
        tuner.observe_cost(&t, &slow);
    }
    assert_eq!(stored_run(&tuner), 8);
    for _ in 0..3 {
        tuner.observe_cost(&t, &slow);
    }
    assert_eq!(stored_run(&tuner), 8);
    let s = tuner.stats();
    assert_eq!((s.fallbacks, s.choices.fallback), (3, 20));
    // No new search: the measurements were right, the machine was busy.
    assert_eq!(s.searches(), 1);
}

#[test]
fn shows_its_decisions_in_the_sidecar_metrics() {
    let tuner = Arc::new(Tuner::new(inline(100.0)));
    let mut metrics = Metrics::new();
    metrics.register_collector(Box::new(tuner.collector()));
    let mask = synthetic::segmentation_mask();
    let noise = synthetic::random_bytes(1 << 20, 5);
    let mask_info = TensorInfo {
        model: "unet:1",
        ..info("mask", DType::U8, 1)
    };
    tuner.choose(&mask_info, &mask.data);
    tuner.choose(&mask_info, &mask.data);
    tuner.choose(&info("noise", DType::U8, 1), &noise);
    let text = metrics.render();
    for line in [
        "bloscar_tuner_searches_total{reason=\"new\"} 2",
        "bloscar_tuner_searches_total{reason=\"drift\"} 0",
        "bloscar_tuner_searches_skipped_total{why=\"budget\"} 0",
        "bloscar_tuner_choices_total{model=\"unet:1\",decision=\"compress\"} 2",
        "bloscar_tuner_choices_total{model=\"\",decision=\"store\"} 1",
        "bloscar_tuner_fallbacks_total 0",
        "bloscar_tuner_entries 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    // Picks are counted per model and codec: no tensor names, no levels or shuffles.
    let pick = tuner
        .picks()
        .into_iter()
        .find(|p| p.name == "mask")
        .unwrap()
        .options
        .unwrap();
    let picks: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bloscar_tuner_picks{"))
        .collect();
    assert_eq!(
        picks.len(),
        2 * bloscar::codec::tune::PICK_CODECS.len(),
        "{text}"
    );
    for codec in bloscar::codec::tune::PICK_CODECS {
        let mask = if codec == pick.codec.name() { 1 } else { 0 };
        let noise = if codec == "store" { 1 } else { 0 };
        for line in [
            format!("bloscar_tuner_picks{{model=\"unet:1\",codec=\"{codec}\"}} {mask}"),
            format!("bloscar_tuner_picks{{model=\"\",codec=\"{codec}\"}} {noise}"),
        ] {
            assert!(
                picks.contains(&line.as_str()),
                "{line} missing from:\n{text}"
            );
        }
    }
    assert!(
        text.contains("# TYPE bloscar_tuner_search_seconds counter"),
        "{text}"
    );
}

#[test]
fn model_labels_are_bounded_and_overflow_into_other() {
    let tuner = Tuner::new(TunerConfig {
        min_size: 0,
        ..inline(100.0)
    });
    let models: Vec<String> = (0..MAX_MODEL_LABELS + 8)
        .map(|i| format!("model-{i}:1"))
        .collect();
    let data = [0u8; 64];
    for model in &models {
        let t = TensorInfo {
            model,
            ..info("INPUT0", DType::U8, 1)
        };
        tuner.choose(&t, &data);
    }
    let by_model = tuner.choices_by_model();
    assert_eq!(by_model.len(), MAX_MODEL_LABELS + 1);
    let other = by_model.iter().find(|m| m.model == OTHER_MODEL).unwrap();
    let total = |c: &bloscar::codec::tune::Choices| {
        c.compressed + c.stored + c.cold_start + c.provisional + c.fallback
    };
    assert_eq!(total(&other.choices), 8);
    assert_eq!(tuner.stats().entries, models.len() as u64);

    // The pick gauge has the same bounded model labels: the 8 late models' keys are
    // counted under `other`, and each label has one series per codec, no more.
    let tuner = Arc::new(tuner);
    let mut metrics = Metrics::new();
    metrics.register_collector(Box::new(tuner.collector()));
    let text = metrics.render();
    let picks: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bloscar_tuner_picks{"))
        .collect();
    let codecs = bloscar::codec::tune::PICK_CODECS.len();
    assert_eq!(picks.len(), (MAX_MODEL_LABELS + 1) * codecs, "{text}");
    let other_keys: u64 = picks
        .iter()
        .filter(|l| l.starts_with("bloscar_tuner_picks{model=\"other\","))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(other_keys, 8, "{text}");
}

#[test]
fn stores_an_empty_tensor_when_there_is_no_minimum_size() {
    let tuner = Tuner::new(TunerConfig {
        min_size: 0,
        ..inline(1000.0)
    });
    assert_eq!(tuner.choose(&info("empty", DType::F32, 4), &[]), None);
    assert_eq!(tuner.stats().choices.stored, 1);
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
                    tuner.choose(&t, &mask.data);
                }
            });
        }
    });
    tuner.wait_idle();
    let s = tuner.stats();
    // Every call was answered: compressed, or stored while its key's first search ran.
    assert_eq!(s.choices.compressed + s.choices.provisional, 200);
    assert_eq!((s.searches_new, s.entries), (4, 4), "{s:?}");
    // Afterwards every key is measured and compressed.
    for name in names {
        assert!(
            tuner
                .choose(&info(name, DType::U8, 1), &mask.data)
                .is_some()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Any size (empty, one byte, not a multiple of the element size), element width and
    /// link: an answer, never a panic, and a setting only for what shrinks.
    #[test]
    fn answers_for_odd_sizes_and_any_link(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
        elem_size in 1usize..=16,
        repeat in 1usize..=64,
        link_mbps in proptest::sample::select(vec![10.0, 1000.0, 1e6]),
        measured in proptest::option::of(1.0f64..1e10),
    ) {
        // At most the tuner's whole sample (4 blocks of 1 KiB): the property is about what
        // the search measured. A larger tensor's ratio can differ from its sample's (Blosc
        // picks other block sizes for it), which the drift and real-time checks are for.
        let mut data: Vec<u8> = data.iter().flat_map(|&b| std::iter::repeat_n(b, repeat)).collect();
        data.truncate(4 * 1024);
        let tuner = Tuner::new(TunerConfig {
            min_size: 0,
            sample_block: 1024,
            sample_blocks: 4,
            ..inline(link_mbps)
        });
        let t = TensorInfo {
            link_bytes_per_sec: measured,
            ..info("t", DType::U8, elem_size)
        };
        if let Some(options) = tuner.choose(&t, &data) {
            let mut compressed = Vec::new();
            bloscar::codec::compress(&data, elem_size, options, &mut compressed).unwrap();
            proptest::prop_assert!(compressed.len() < data.len());
        }
        let s = tuner.stats();
        proptest::prop_assert_eq!(s.searches_new, 1);
        proptest::prop_assert_eq!(s.choices.compressed + s.choices.stored, 1);
    }
}
