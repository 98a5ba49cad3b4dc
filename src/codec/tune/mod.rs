//! The auto-tuner: picks the Blosc setting per tensor that minimises
//! compress + transfer + decompress time on the configured link.
//!
//! A search trial-compresses a sample of the tensor (a few blocks spread over it) with a
//! pruned set of settings and keeps the one with the lowest estimated end-to-end time,
//! or stores the tensor when no setting beats sending it as it is (noise, JPEG bytes).
//! The pick is remembered per (method, tensor name, dtype): the steady state is one hash
//! lookup under a sharded lock. A key is searched again every
//! [`TunerConfig::recheck_every`] messages, and at once when the ratios reported through
//! [`Chooser::observe`] drift from the ones seen after the last search.
//!
//! Decisions are logged at debug level (target `bloscar::codec::tune`) and counted in
//! [`TunerStats`]; [`TunerCollector`] exposes them to a prometheus-client registry.

pub mod clock;
pub mod cost;
mod search;
mod stats;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use clock::Stopwatch;
pub use search::{Search, SearchParams, sample_ranges, search};
pub use stats::{TuneReason, TunerCollector, TunerPick, TunerStats};

use crate::message::{Chooser, TensorInfo, TensorOutcome};
use crate::{CompressOptions, DType};

const SHARDS: usize = 16;

/// How the tuner judges and how often it looks again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunerConfig {
    /// Link bandwidth between the sidecars, Mbit/s (`BLOSCAR_LINK_MBPS`).
    pub link_mbps: f64,
    /// Tensors smaller than this many bytes are left uncompressed without a search
    /// (`BLOSCAR_MIN_TENSOR_BYTES`).
    pub min_size: usize,
    /// Bytes per sample block.
    pub sample_block: usize,
    /// Sample blocks per search, spread evenly over the tensor.
    pub sample_blocks: usize,
    /// Runs per trial setting; the fastest counts.
    pub trial_runs: usize,
    /// Messages after which a remembered pick is searched again, at the least.
    pub recheck_every: u64,
    /// Re-checks are spaced further apart when needed so that searching costs at most
    /// this fraction of the Blosc work (compress + decompress) of the messages between
    /// two searches, or of their transfer time when they are stored (0 turns the spacing
    /// off: every `recheck_every` messages).
    pub search_budget: f64,
    /// Relative change of the observed ratio (0.25 = 25%) that triggers a new search.
    pub drift: f64,
    /// Compression must beat storing by this fraction of the store time, so that a
    /// marginal gain does not cost CPU on both sides.
    pub min_gain: f64,
    /// Keys remembered at most; beyond that, one remembered key is forgotten per new key.
    pub max_entries: usize,
}

impl Default for TunerConfig {
    fn default() -> Self {
        Self {
            link_mbps: 1000.0,
            min_size: 10 * 1024,
            sample_block: 256 * 1024,
            sample_blocks: 4,
            trial_runs: 2,
            recheck_every: 1000,
            search_budget: 0.01,
            drift: 0.25,
            min_gain: 0.03,
            max_entries: 4096,
        }
    }
}

impl TunerConfig {
    /// The default configuration for a link of `link_mbps` Mbit/s.
    pub fn with_link_mbps(link_mbps: f64) -> Self {
        Self {
            link_mbps,
            ..Self::default()
        }
    }

    fn search_params(&self) -> SearchParams {
        SearchParams {
            link_mbps: self.link_mbps,
            block: self.sample_block,
            blocks: self.sample_blocks,
            min_gain: self.min_gain,
            runs: self.trial_runs,
        }
    }
}

/// The auto-tuner; share it across threads behind an `Arc`.
#[derive(Debug)]
pub struct Tuner {
    config: TunerConfig,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    counters: stats::Counters,
}

/// One remembered key.
#[derive(Debug)]
struct Entry {
    method: Box<str>,
    name: Box<str>,
    dtype: DType,
    pick: Option<CompressOptions>,
    sample_ratio: f64,
    /// Messages answered since the last search.
    uses: u64,
    /// Messages after which the next periodic search is due.
    recheck_after: u64,
    /// The ratio of the first outcome observed after the search: the reference for drift
    /// (a sample's ratio differs from a whole tensor's by Blosc's block sizes).
    baseline: Option<f64>,
    drifted: bool,
    /// A thread is searching this key again; others keep using the current pick.
    searching: bool,
}

impl Entry {
    fn is(&self, t: &TensorInfo<'_>) -> bool {
        *self.method == *t.method && *self.name == *t.name && self.dtype == t.dtype
    }
}

impl Tuner {
    /// A tuner with an empty cache.
    pub fn new(config: TunerConfig) -> Self {
        Self {
            config,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            counters: stats::Counters::default(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &TunerConfig {
        &self.config
    }

    /// Searches the best setting for `data` now, without the cache or the size threshold.
    pub fn search(
        &self,
        data: &[u8],
        elem_size: usize,
    ) -> Result<Search, crate::codec::CodecError> {
        search(data, elem_size, self.config.search_params())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TunerStats {
        let entries = self.shards.iter().map(|s| lock(s).len()).sum();
        self.counters.snapshot(entries)
    }

    /// The current pick of every remembered key.
    pub fn picks(&self) -> Vec<TunerPick> {
        let mut picks: Vec<TunerPick> = self
            .shards
            .iter()
            .flat_map(|s| {
                lock(s)
                    .values()
                    .map(|e| TunerPick {
                        method: e.method.to_string(),
                        name: e.name.to_string(),
                        dtype: e.dtype,
                        options: e.pick,
                        sample_ratio: e.sample_ratio,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        picks.sort_by(|a, b| (&a.method, &a.name).cmp(&(&b.method, &b.name)));
        picks
    }

    /// A prometheus-client collector over this tuner.
    pub fn collector(self: &Arc<Self>) -> TunerCollector {
        TunerCollector::new(Arc::clone(self))
    }

    fn key(&self, t: &TensorInfo<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        t.method.hash(&mut h);
        t.name.hash(&mut h);
        t.dtype.hash(&mut h);
        h.finish()
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, Entry>> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// The cached pick, or why a search is due.
    fn lookup(&self, key: u64, t: &TensorInfo<'_>) -> Result<Option<CompressOptions>, TuneReason> {
        let mut shard = lock(self.shard(key));
        let Some(e) = shard.get_mut(&key).filter(|e| e.is(t)) else {
            return Err(TuneReason::New);
        };
        e.uses += 1;
        let due = if e.drifted {
            Some(TuneReason::Drift)
        } else if e.uses >= e.recheck_after {
            Some(TuneReason::Periodic)
        } else {
            None
        };
        match due {
            Some(reason) if !e.searching => {
                e.searching = true;
                Err(reason)
            }
            _ => Ok(e.pick),
        }
    }

    fn remember(
        &self,
        key: u64,
        t: &TensorInfo<'_>,
        pick: Option<CompressOptions>,
        ratio: f64,
        recheck_after: u64,
    ) {
        let mut shard = lock(self.shard(key));
        let per_shard = self.config.max_entries.div_ceil(SHARDS).max(1);
        if !shard.contains_key(&key) && shard.len() >= per_shard {
            // Forget an arbitrary key: it is searched again if it comes back.
            if let Some(&victim) = shard.keys().next() {
                shard.remove(&victim);
            }
        }
        shard.insert(
            key,
            Entry {
                method: t.method.into(),
                name: t.name.into(),
                dtype: t.dtype,
                pick,
                sample_ratio: ratio,
                uses: 0,
                recheck_after,
                baseline: None,
                drifted: false,
                searching: false,
            },
        );
    }

    fn tune(
        &self,
        key: u64,
        t: &TensorInfo<'_>,
        data: &[u8],
        reason: TuneReason,
    ) -> Option<CompressOptions> {
        let start = Stopwatch::start();
        let result = self.search(data, t.elem_size);
        let elapsed = start.elapsed();
        self.counters.searched(reason);
        self.counters.search_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match result {
            Ok(s) => {
                let recheck_after = self.recheck_after(elapsed.as_secs_f64(), &s);
                if s.pick.is_none() {
                    self.counters
                        .store_decisions
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(
                    method = t.method,
                    tensor = t.name,
                    dtype = %t.dtype,
                    bytes = data.len(),
                    reason = reason.name(),
                    pick = %s.pick.map_or_else(|| "store".to_owned(), |o| o.to_string()),
                    sample_ratio = s.ratio,
                    estimate_ms = s.estimate_secs * 1e3,
                    store_ms = s.store_secs * 1e3,
                    trials = s.trials.len(),
                    search_us = elapsed.as_micros() as u64,
                    recheck_after,
                    "tuner decision"
                );
                self.remember(key, t, s.pick, s.ratio, recheck_after);
                s.pick
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(method = t.method, tensor = t.name, error = %e, "tuner search failed; sending uncompressed");
                self.remember(key, t, None, 1.0, self.config.recheck_every);
                None
            }
        }
    }
}

impl Tuner {
    /// Messages until the next periodic search: at least `recheck_every`, and enough
    /// that a search of `search_secs` stays within the budget of the messages' own cost
    /// (Blosc work for the pick, or transfer time when stored).
    fn recheck_after(&self, search_secs: f64, search: &Search) -> u64 {
        let message_secs = if search.cpu_secs > 0.0 {
            search.cpu_secs
        } else {
            search.estimate_secs
        };
        let budget = self.config.search_budget * message_secs;
        let spaced = if budget > 0.0 {
            (search_secs / budget).ceil()
        } else {
            0.0
        };
        // Saturating float-to-int conversion: an enormous spacing means "practically never".
        (spaced as u64).max(self.config.recheck_every)
    }
}

impl Chooser for Tuner {
    fn choose(&self, tensor: &TensorInfo<'_>, data: &[u8]) -> Option<CompressOptions> {
        if data.len() < self.config.min_size {
            self.counters.below_min_size.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let key = self.key(tensor);
        match self.lookup(key, tensor) {
            Ok(pick) => {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                pick
            }
            Err(reason) => self.tune(key, tensor, data, reason),
        }
    }

    fn observe(&self, tensor: &TensorInfo<'_>, outcome: &TensorOutcome) {
        if outcome.compressed_len == 0 || outcome.original_len == 0 {
            return;
        }
        let ratio = outcome.original_len as f64 / outcome.compressed_len as f64;
        let key = self.key(tensor);
        let mut shard = lock(self.shard(key));
        let Some(e) = shard.get_mut(&key).filter(|e| e.is(tensor)) else {
            return;
        };
        if e.pick != Some(outcome.options) {
            return;
        }
        match e.baseline {
            None => e.baseline = Some(ratio),
            Some(base) if (ratio / base - 1.0).abs() > self.config.drift && !e.drifted => {
                e.drifted = true;
                tracing::debug!(
                    method = tensor.method,
                    tensor = tensor.name,
                    baseline_ratio = base,
                    ratio,
                    "tuner saw the ratio drift; searching again"
                );
            }
            Some(_) => {}
        }
    }
}

/// A poisoned shard only means a thread panicked while holding it; the map itself is
/// always consistent (every update is a single insert or field write).
fn lock(m: &Mutex<HashMap<u64, Entry>>) -> MutexGuard<'_, HashMap<u64, Entry>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
