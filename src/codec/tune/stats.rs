//! What the tuner has done, for metrics: counters, choices per model, and the current
//! pick per key.
//!
//! The sidecar registers [`TunerCollector`] with its metrics
//! (`metrics.register_collector(Box::new(tuner.collector()))`, names prefixed with
//! `bloscar_`); each scrape then reads these values. The same numbers are available as
//! plain data through [`Tuner::stats`](super::Tuner::stats),
//! [`Tuner::choices_by_model`](super::Tuner::choices_by_model) and
//! [`Tuner::picks`](super::Tuner::picks).
//!
//! Label sets stay bounded and stable whatever the callers send: choices and picks are
//! counted for the first [`MAX_MODEL_LABELS`] models seen and the rest under
//! `model="other"`; the picks are counted per codec ([`PICK_CODECS`]), never labelled
//! with tensor names or with levels and shuffles that change as the link does (those are
//! in [`Tuner::picks`](super::Tuner::picks) and the debug log).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Tuner;
use crate::{CompressOptions, DType};

/// Models counted under their own label; later ones are counted as `other`.
pub const MAX_MODEL_LABELS: usize = 32;
/// The `codec` values of `bloscar_tuner_picks`: each Blosc codec, `store` (judged, sent
/// uncompressed) and `pending` (not judged yet).
pub const PICK_CODECS: [&str; 8] = [
    "blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd", "store", "pending",
];
/// The label of the models beyond [`MAX_MODEL_LABELS`].
pub const OTHER_MODEL: &str = "other";

/// Why the tuner ran a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneReason {
    /// First message of a key.
    New,
    /// The periodic re-check.
    Periodic,
    /// Observed ratios drifted from the ones seen after the last search.
    Drift,
}

impl TuneReason {
    /// The label value in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            TuneReason::New => "new",
            TuneReason::Periodic => "periodic",
            TuneReason::Drift => "drift",
        }
    }
}

/// What `choose` answered for one tensor at least the minimum size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Compressed with the setting estimated best at the link rate in effect.
    Compress(CompressOptions),
    /// Stored: no setting beats sending the bytes as they are at that rate.
    Store,
    /// Stored: no link rate is known yet.
    ColdStart,
    /// Stored: the key's first search has not finished.
    Provisional,
    /// Stored: real messages showed compression did not pay; retried after a backoff.
    Fallback,
}

impl Decision {
    pub fn options(self) -> Option<CompressOptions> {
        match self {
            Decision::Compress(o) => Some(o),
            _ => None,
        }
    }

    fn slot(self) -> usize {
        match self {
            Decision::Compress(_) => 0,
            Decision::Store => 1,
            Decision::ColdStart => 2,
            Decision::Provisional => 3,
            Decision::Fallback => 4,
        }
    }
}

const DECISIONS: usize = 5;
const DECISION_NAMES: [&str; DECISIONS] =
    ["compress", "store", "cold_start", "provisional", "fallback"];

/// How many tensors got each answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Choices {
    /// Compressed with the setting estimated best.
    pub compressed: u64,
    /// Stored because no setting beats storing at the link rate in effect.
    pub stored: u64,
    /// Stored because no link rate was known yet (cold start).
    pub cold_start: u64,
    /// Stored while the key's first search was pending.
    pub provisional: u64,
    /// Stored because the real-time check found compression did not pay.
    pub fallback: u64,
}

impl Choices {
    fn from_slots(slots: &[AtomicU64; DECISIONS]) -> Self {
        let get = |i: usize| slots[i].load(Ordering::Relaxed);
        Self {
            compressed: get(0),
            stored: get(1),
            cold_start: get(2),
            provisional: get(3),
            fallback: get(4),
        }
    }

    fn values(&self) -> [u64; DECISIONS] {
        [
            self.compressed,
            self.stored,
            self.cold_start,
            self.provisional,
            self.fallback,
        ]
    }

    fn add(&mut self, other: &Choices) {
        self.compressed += other.compressed;
        self.stored += other.stored;
        self.cold_start += other.cold_start;
        self.provisional += other.provisional;
        self.fallback += other.fallback;
    }
}

/// Choices of one model (`other` for the models beyond [`MAX_MODEL_LABELS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoices {
    /// The model key ("" when the caller had none).
    pub model: String,
    /// Its counts.
    pub choices: Choices,
}

/// The tuner's counters (monotonic since it was created).
#[derive(Debug)]
pub(super) struct Counters {
    pub searches_new: AtomicU64,
    pub searches_periodic: AtomicU64,
    pub searches_drift: AtomicU64,
    pub skipped_queue_full: AtomicU64,
    pub skipped_budget: AtomicU64,
    pub below_min_size: AtomicU64,
    pub fallbacks: AtomicU64,
    pub search_nanos: AtomicU64,
    pub errors: AtomicU64,
    /// Model label of each slot, in the order first seen.
    models: Mutex<Vec<Box<str>>>,
    /// Choices per model slot; the last slot is `other`.
    by_model: Box<[[AtomicU64; DECISIONS]]>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            searches_new: AtomicU64::default(),
            searches_periodic: AtomicU64::default(),
            searches_drift: AtomicU64::default(),
            skipped_queue_full: AtomicU64::default(),
            skipped_budget: AtomicU64::default(),
            below_min_size: AtomicU64::default(),
            fallbacks: AtomicU64::default(),
            search_nanos: AtomicU64::default(),
            errors: AtomicU64::default(),
            models: Mutex::new(Vec::new()),
            by_model: (0..=MAX_MODEL_LABELS).map(|_| Default::default()).collect(),
        }
    }
}

impl Counters {
    pub fn searched(&self, reason: TuneReason) {
        let c = match reason {
            TuneReason::New => &self.searches_new,
            TuneReason::Periodic => &self.searches_periodic,
            TuneReason::Drift => &self.searches_drift,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter slot of `model`: looked up once per new key, not per message.
    pub fn model_slot(&self, model: &str) -> usize {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = models.iter().position(|m| **m == *model) {
            return i;
        }
        if models.len() < MAX_MODEL_LABELS {
            models.push(model.into());
            models.len() - 1
        } else {
            MAX_MODEL_LABELS
        }
    }

    pub fn decided(&self, model_slot: usize, decision: Decision) {
        if let Some(slots) = self.by_model.get(model_slot) {
            slots[decision.slot()].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn by_model(&self) -> Vec<ModelChoices> {
        let models = self
            .models
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out: Vec<ModelChoices> = models
            .iter()
            .zip(self.by_model.iter())
            .map(|(m, slots)| ModelChoices {
                model: m.to_string(),
                choices: Choices::from_slots(slots),
            })
            .collect();
        let other = Choices::from_slots(&self.by_model[MAX_MODEL_LABELS]);
        if other != Choices::default() {
            out.push(ModelChoices {
                model: OTHER_MODEL.to_owned(),
                choices: other,
            });
        }
        out
    }

    pub fn snapshot(&self, entries: usize) -> TunerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut choices = Choices::default();
        for slots in self.by_model.iter() {
            choices.add(&Choices::from_slots(slots));
        }
        TunerStats {
            searches_new: get(&self.searches_new),
            searches_periodic: get(&self.searches_periodic),
            searches_drift: get(&self.searches_drift),
            searches_skipped_queue_full: get(&self.skipped_queue_full),
            searches_skipped_budget: get(&self.skipped_budget),
            choices,
            below_min_size: get(&self.below_min_size),
            fallbacks: get(&self.fallbacks),
            search_seconds: get(&self.search_nanos) as f64 / 1e9,
            errors: get(&self.errors),
            entries: entries as u64,
        }
    }
}

/// A snapshot of the tuner's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TunerStats {
    /// Searches for keys seen for the first time.
    pub searches_new: u64,
    /// Searches from the periodic re-check.
    pub searches_periodic: u64,
    /// Searches because the observed ratio drifted.
    pub searches_drift: u64,
    /// Searches not started because the background queue was full (retried on a later
    /// message of the key).
    pub searches_skipped_queue_full: u64,
    /// Searches not started because the per-second budget was spent (retried on a later
    /// message of the key).
    pub searches_skipped_budget: u64,
    /// What `choose` answered for tensors of at least the minimum size, all models.
    pub choices: Choices,
    /// Tensors left alone because they were below the minimum size.
    pub below_min_size: u64,
    /// Times a key fell back to storing after the real-time check.
    pub fallbacks: u64,
    /// Thread CPU time spent searching, in seconds.
    pub search_seconds: f64,
    /// Searches that failed in Blosc (the key is then stored).
    pub errors: u64,
    /// Keys remembered.
    pub entries: u64,
}

impl TunerStats {
    /// Searches run, for any reason.
    pub fn searches(&self) -> u64 {
        self.searches_new + self.searches_periodic + self.searches_drift
    }
}

/// The current pick for one (method, model, tensor, dtype).
#[derive(Debug, Clone, PartialEq)]
pub struct TunerPick {
    /// gRPC method path.
    pub method: String,
    /// Model key ("" when the caller had none).
    pub model: String,
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// The setting at the last link rate the key was judged at; `None` when stored or
    /// not judged yet.
    pub options: Option<CompressOptions>,
    /// The ratio that setting reached on the search's sample (1.0 when stored).
    pub sample_ratio: f64,
    /// The link rate, bytes/s, of the last judgement; `None` before one.
    pub link_bytes_per_sec: Option<f64>,
    /// Whether a search has measured the key.
    pub measured: bool,
}

/// A prometheus-client collector that reads the tuner on every scrape.
#[derive(Debug, Clone)]
pub struct TunerCollector {
    tuner: Arc<Tuner>,
}

impl TunerCollector {
    /// A collector over a shared tuner.
    pub fn new(tuner: Arc<Tuner>) -> Self {
        Self { tuner }
    }
}

impl TunerCollector {
    /// Keys per model label and [`PICK_CODECS`] entry; every model that has choices
    /// gets all of its codec series, so that series do not come and go as picks change.
    fn pick_counts(&self) -> Vec<(String, [i64; PICK_CODECS.len()])> {
        let mut out: Vec<(String, [i64; PICK_CODECS.len()])> = self
            .tuner
            .choices_by_model()
            .into_iter()
            .map(|m| (m.model, [0; PICK_CODECS.len()]))
            .collect();
        for pick in self.tuner.picks() {
            let codec = match (pick.link_bytes_per_sec, pick.options) {
                (None, _) => "pending",
                (Some(_), None) => "store",
                (Some(_), Some(o)) => o.codec.name(),
            };
            let Some(column) = PICK_CODECS.iter().position(|c| *c == codec) else {
                continue;
            };
            let row = match out.iter().position(|(m, _)| *m == pick.model) {
                Some(row) => row,
                None => match out.iter().position(|(m, _)| m == OTHER_MODEL) {
                    Some(row) => row,
                    None => {
                        out.push((OTHER_MODEL.to_owned(), [0; PICK_CODECS.len()]));
                        out.len() - 1
                    }
                },
            };
            out[row].1[column] += 1;
        }
        out
    }
}

impl Collector for TunerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.tuner.stats();
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "tuner_searches",
            "Trial-compression searches the auto-tuner ran, by reason",
            None,
            counter.metric_type(),
        )?;
        for (reason, n) in [
            (TuneReason::New, s.searches_new),
            (TuneReason::Periodic, s.searches_periodic),
            (TuneReason::Drift, s.searches_drift),
        ] {
            let labels = [("reason", reason.name())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "tuner_searches_skipped",
            "Searches not started (retried on a later message), by why: the background queue was full or the per-second budget was spent",
            None,
            counter.metric_type(),
        )?;
        for (why, n) in [
            ("queue_full", s.searches_skipped_queue_full),
            ("budget", s.searches_skipped_budget),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("why", why)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "tuner_choices",
            "Tensors the auto-tuner answered for, by model (the first 32 models seen, then \"other\") and decision (compress, store, cold_start, provisional, fallback)",
            None,
            counter.metric_type(),
        )?;
        for m in self.tuner.choices_by_model() {
            for (decision, n) in DECISION_NAMES.iter().zip(m.choices.values()) {
                let labels = [("model", m.model.as_str()), ("decision", decision)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "tuner_below_min_size",
                "Tensors the tuner left alone because they were below the minimum size",
                s.below_min_size,
            ),
            (
                "tuner_fallbacks",
                "Times a key fell back to storing because real messages showed compression did not pay",
                s.fallbacks,
            ),
            (
                "tuner_errors",
                "Searches that failed (the key was stored)",
                s.errors,
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let c = ConstCounter::new(s.search_seconds);
        c.encode(encoder.encode_descriptor(
            "tuner_search_seconds",
            "Thread CPU time the auto-tuner spent in trial compression",
            None,
            c.metric_type(),
        )?)?;
        let g = ConstGauge::new(s.entries as i64);
        g.encode(encoder.encode_descriptor(
            "tuner_entries",
            "(method, model, tensor, dtype) keys the auto-tuner remembers",
            None,
            g.metric_type(),
        )?)?;

        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "tuner_picks",
            "Keys (method, model, tensor, dtype) whose current pick uses each codec, by model (the first 32 models seen, then \"other\"): codec=\"store\" when judged not worth compressing, \"pending\" before the first judgement",
            None,
            gauge.metric_type(),
        )?;
        for (model, counts) in self.pick_counts() {
            for (codec, n) in PICK_CODECS.iter().zip(counts) {
                let labels = [("model", model.as_str()), ("codec", codec)];
                ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
