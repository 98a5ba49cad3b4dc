//! What the tuner has done, for metrics: counters, and the current pick per tensor.
//!
//! The sidecar registers [`TunerCollector`] with its metrics
//! (`metrics.register_collector(Box::new(tuner.collector()))`, names prefixed with
//! `bloscar_`); each scrape then reads these values. The same numbers are available as plain data through
//! [`Tuner::stats`](super::Tuner::stats) and [`Tuner::picks`](super::Tuner::picks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Tuner;
use crate::{CompressOptions, DType};

/// Why the tuner ran a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneReason {
    /// First message of a (method, tensor, dtype).
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

/// The tuner's counters (monotonic since it was created).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub searches_new: AtomicU64,
    pub searches_periodic: AtomicU64,
    pub searches_drift: AtomicU64,
    pub cache_hits: AtomicU64,
    pub below_min_size: AtomicU64,
    pub store_decisions: AtomicU64,
    pub search_nanos: AtomicU64,
    pub errors: AtomicU64,
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

    pub fn snapshot(&self, entries: usize) -> TunerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TunerStats {
            searches_new: get(&self.searches_new),
            searches_periodic: get(&self.searches_periodic),
            searches_drift: get(&self.searches_drift),
            cache_hits: get(&self.cache_hits),
            below_min_size: get(&self.below_min_size),
            store_decisions: get(&self.store_decisions),
            search_seconds: get(&self.search_nanos) as f64 / 1e9,
            errors: get(&self.errors),
            entries: entries as u64,
        }
    }
}

/// A snapshot of the tuner's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TunerStats {
    /// Searches for tensors seen for the first time.
    pub searches_new: u64,
    /// Searches from the periodic re-check.
    pub searches_periodic: u64,
    /// Searches because the observed ratio drifted.
    pub searches_drift: u64,
    /// Choices answered from the cache.
    pub cache_hits: u64,
    /// Tensors left alone because they were below the minimum size.
    pub below_min_size: u64,
    /// Searches that decided to store the data uncompressed.
    pub store_decisions: u64,
    /// Time spent searching, in seconds.
    pub search_seconds: f64,
    /// Searches that failed in Blosc (the tensor was then stored).
    pub errors: u64,
    /// (method, tensor, dtype) keys remembered.
    pub entries: u64,
}

/// The current pick for one (method, tensor, dtype).
#[derive(Debug, Clone, PartialEq)]
pub struct TunerPick {
    /// gRPC method path.
    pub method: String,
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// The setting, `None` when the tensor is stored.
    pub options: Option<CompressOptions>,
    /// The ratio the search measured on its sample.
    pub sample_ratio: f64,
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

impl Collector for TunerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.tuner.stats();
        let searches = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "tuner_searches",
            "Trial-compression searches the auto-tuner ran, by reason",
            None,
            searches.metric_type(),
        )?;
        for (reason, n) in [
            (TuneReason::New, s.searches_new),
            (TuneReason::Periodic, s.searches_periodic),
            (TuneReason::Drift, s.searches_drift),
        ] {
            let labels = [("reason", reason.name())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, value) in [
            (
                "tuner_cache_hits",
                "Tensors whose setting came from the tuner's cache",
                s.cache_hits,
            ),
            (
                "tuner_below_min_size",
                "Tensors the tuner left alone because they were below the minimum size",
                s.below_min_size,
            ),
            (
                "tuner_store_decisions",
                "Searches that decided to send the tensor uncompressed",
                s.store_decisions,
            ),
            (
                "tuner_errors",
                "Searches that failed (the tensor was sent uncompressed)",
                s.errors,
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let c = ConstCounter::new(s.search_seconds);
        c.encode(encoder.encode_descriptor(
            "tuner_search_seconds",
            "Time the auto-tuner spent in trial compression",
            None,
            c.metric_type(),
        )?)?;
        let g = ConstGauge::new(s.entries as i64);
        g.encode(encoder.encode_descriptor(
            "tuner_entries",
            "(method, tensor, dtype) keys the auto-tuner remembers",
            None,
            g.metric_type(),
        )?)?;

        let picks = self.tuner.picks();
        let ratio = ConstGauge::new(0.0f64);
        let mut family = encoder.encode_descriptor(
            "tuner_pick_sample_ratio",
            "Current pick per tensor (codec, level, shuffle; codec=\"store\" when sent uncompressed) and the ratio it reached on the search's sample",
            None,
            ratio.metric_type(),
        )?;
        for p in picks {
            let (codec, level, shuffle) = match p.options {
                Some(o) => (
                    o.codec.to_string(),
                    o.level.to_string(),
                    o.shuffle.to_string(),
                ),
                None => ("store".to_owned(), "0".to_owned(), "none".to_owned()),
            };
            let labels = [
                ("method", p.method),
                ("tensor", p.name),
                ("dtype", p.dtype.to_string()),
                ("codec", codec),
                ("level", level),
                ("shuffle", shuffle),
            ];
            ConstGauge::new(p.sample_ratio).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
