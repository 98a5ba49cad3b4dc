//! The auto-tuner: picks the Blosc setting per tensor with the lowest estimated time of
//! a pipelined transfer (compress, link and decompress overlapping chunk by chunk) at
//! the link rate in effect for the message.
//!
//! A search trial-compresses a sample of the tensor (a few blocks spread over it) with a
//! pruned set of settings. Its result does not depend on the link: the settings no other
//! beats in ratio, compress and decompress time. Each message judges them against the
//! link rate in effect (the configured [`TunerConfig::link_mbps`], or else the measured
//! [`TensorInfo::link_bytes_per_sec`] of its peer) and stores the tensor when no setting
//! beats sending it as it is (noise, JPEG bytes, a link faster than the CPU), so a
//! change of the link is followed at once.
//!
//! - **Cold start.** Before any link rate is known, tensors are stored: never slower
//!   than no sidecar, and it lets the receiving side measure the link.
//! - **Keys.** Results are remembered per (method, model, tensor name, dtype); the
//!   steady state is one hash lookup under a sharded lock.
//! - **Off the message path.** A key's first search runs on a background thread (see
//!   [`TunerConfig::background`]); until it is done the key is stored. Searches are
//!   bounded by a queue ([`TunerConfig::search_queue`]) and a per-second budget
//!   ([`TunerConfig::searches_per_sec`]); one not started is tried again on a later
//!   message.
//! - **Re-checks.** Every key, stored or compressed, is searched again every
//!   [`TunerConfig::recheck_every`] messages (spaced further by
//!   [`TunerConfig::search_budget`]), and at once when the ratios reported through
//!   [`Chooser::observe`] drift from the ones seen after the last search.
//! - **Real-time check.** [`Chooser::observe_cost`] compares what a compressed message
//!   really cost (wall clock, under the machine's load, with the peer's decompression)
//!   with storing; when compression stops paying, the key is stored for a backoff (see
//!   `realtime`).
//!
//! Decisions are logged at debug level (target `bloscar::codec::tune`) and counted in
//! [`TunerStats`]; [`TunerCollector`] exposes them to a prometheus-client registry.

mod background;
pub mod clock;
pub mod cost;
pub mod link;
mod realtime;
mod search;
mod stats;

use std::collections::{HashMap, hash_map};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use background::{Budget, DoneGuard, Ident, Job, Pending, Workers};
use clock::Stopwatch;
pub use cost::{Evaluation, Measurement, Objective, mbps_to_bytes_per_sec};
pub use link::{LinkEstimator, LinkSample, PeerLinks, SampleKind};
use realtime::RealTimeCheck;
pub use search::{Search, SearchParams, sample, sample_ranges, search, search_sample};
use stats::Decision;
pub use stats::{
    Choices, MAX_MODEL_LABELS, ModelChoices, OTHER_MODEL, PICK_CODECS, TuneReason, TunerCollector,
    TunerPick, TunerStats,
};

use crate::CompressOptions;
use crate::message::{Chooser, MessageCost, TensorInfo, TensorOutcome};

const SHARDS: usize = 16;

/// How the tuner judges and how often it looks again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunerConfig {
    /// Link rate between the sidecars in Mbit/s, overriding the measured rate of each
    /// peer; `None` (the default) uses [`TensorInfo::link_bytes_per_sec`].
    pub link_mbps: Option<f64>,
    /// Tensors smaller than this many bytes are left uncompressed without a search
    /// (`BLOSCAR_MIN_TENSOR_BYTES`).
    pub min_size: usize,
    /// Bytes per sample block.
    pub sample_block: usize,
    /// Sample blocks per search, spread evenly over the tensor.
    pub sample_blocks: usize,
    /// Runs per trial setting; the fastest counts.
    pub trial_runs: usize,
    /// The slowest link served, Mbit/s: a search does not try stronger levels once a
    /// setting compresses or decompresses slower than this (it could not beat storing).
    pub slowest_link_mbps: f64,
    /// Bytes per pipeline chunk, the sidecar's segment size: one chunk's compression and
    /// decompression is the fill and drain of the pipeline.
    pub chunk_bytes: usize,
    /// Messages after which a remembered key is searched again, at the least.
    pub recheck_every: u64,
    /// Re-checks are spaced further apart when needed so that searching costs at most
    /// this fraction of the Blosc work of the cheapest setting on the messages between two
    /// searches (0 turns the spacing off: every `recheck_every` messages).
    pub search_budget: f64,
    /// Searches started per second at most, over all keys (bursts of as many after a
    /// quiet second); 0 is no limit.
    pub searches_per_sec: f64,
    /// Search on background threads (`true`, the default) or in `choose` itself, which
    /// then answers from the new search at once (for tests and one-shot tools).
    pub background: bool,
    /// Background search threads.
    pub search_threads: usize,
    /// Searches waiting for a background thread at most; each holds a copy of its sample.
    pub search_queue: usize,
    /// Relative change of the observed ratio (0.25 = 25%) that triggers a new search.
    pub drift: f64,
    /// Compression must beat storing by this fraction of the store time, so that a
    /// marginal gain does not cost CPU on both sides. It is wider than the error of the
    /// estimates it compares: a link rate or a codec speed measured on a busy host can
    /// be off by a tenth, and a pick that wins by less may well lose.
    pub min_gain: f64,
    /// Keys remembered at most; beyond that, one remembered key is forgotten per new key.
    pub max_entries: usize,
    /// Messages a key is stored after the real-time check found compression did not pay.
    pub fallback_backoff: u64,
    /// The backoff doubles on each failure right after a retry, up to this many messages.
    pub fallback_backoff_max: u64,
}

impl Default for TunerConfig {
    fn default() -> Self {
        Self {
            link_mbps: None,
            min_size: 10 * 1024,
            sample_block: 256 * 1024,
            sample_blocks: 4,
            trial_runs: 2,
            slowest_link_mbps: 50.0,
            chunk_bytes: 1 << 20,
            recheck_every: 1000,
            search_budget: 0.01,
            searches_per_sec: 20.0,
            background: true,
            search_threads: 1,
            search_queue: 8,
            drift: 0.25,
            min_gain: 0.10,
            max_entries: 4096,
            fallback_backoff: 16,
            fallback_backoff_max: 4096,
        }
    }
}

impl TunerConfig {
    /// The default configuration with the link rate fixed at `link_mbps` Mbit/s.
    pub fn with_link_mbps(link_mbps: f64) -> Self {
        Self {
            link_mbps: Some(link_mbps),
            ..Self::default()
        }
    }

    /// How settings are judged.
    pub fn objective(&self) -> Objective {
        Objective {
            chunk: self.chunk_bytes,
            min_gain: self.min_gain,
        }
    }

    fn search_params(&self) -> SearchParams {
        SearchParams {
            block: self.sample_block,
            blocks: self.sample_blocks,
            runs: self.trial_runs,
            min_speed: mbps_to_bytes_per_sec(self.slowest_link_mbps),
        }
    }
}

/// The auto-tuner; share it across threads behind an `Arc`. Dropping it stops its
/// background threads once their queued searches are done.
#[derive(Debug)]
pub struct Tuner {
    state: Arc<State>,
    workers: Option<Workers>,
}

/// What the message path and the background threads share.
#[derive(Debug)]
struct State {
    config: TunerConfig,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    counters: stats::Counters,
    budget: Budget,
    pending: Pending,
}

/// One remembered key.
#[derive(Debug)]
struct Entry {
    ident: Ident,
    /// The counter slot of its model.
    model_slot: usize,
    /// The measured settings; `None` until the first search is done.
    candidates: Option<Box<[Measurement]>>,
    /// Messages answered since the key was remembered.
    messages: u64,
    /// Messages answered since the last search.
    uses: u64,
    /// Messages after which the next periodic search is due.
    recheck_after: u64,
    /// The first observed ratio after the search over the sample's ratio of the same
    /// setting: the reference for drift (a sample's ratio differs from a whole tensor's
    /// by Blosc's block sizes).
    baseline: Option<f64>,
    drifted: bool,
    /// A search of this key is queued or running; the key keeps its current answer.
    searching: bool,
    /// The last judgement and the link rate it was made at.
    last: Option<(Evaluation, f64)>,
    realtime: RealTimeCheck,
}

impl Ident {
    fn of(t: &TensorInfo<'_>) -> Self {
        Self {
            method: t.method.into(),
            model: t.model.into(),
            name: t.name.into(),
            dtype: t.dtype,
        }
    }

    fn is(&self, t: &TensorInfo<'_>) -> bool {
        *self.method == *t.method
            && *self.model == *t.model
            && *self.name == *t.name
            && self.dtype == t.dtype
    }
}

impl Entry {
    /// Why the key should be searched now, if it should; marks it as searching.
    fn take_due(&mut self) -> Option<TuneReason> {
        if self.searching {
            return None;
        }
        let reason = if self.candidates.is_none() {
            TuneReason::New
        } else if self.drifted {
            TuneReason::Drift
        } else if self.uses >= self.recheck_after {
            TuneReason::Periodic
        } else {
            return None;
        };
        self.searching = true;
        Some(reason)
    }
}

impl Tuner {
    /// A tuner with an empty cache; starts its background threads when
    /// [`TunerConfig::background`] is set (it searches in `choose` when none can start).
    pub fn new(config: TunerConfig) -> Self {
        let state = Arc::new(State {
            config,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            counters: stats::Counters::default(),
            budget: Budget::new(config.searches_per_sec),
            pending: Pending::default(),
        });
        let workers = config.background.then(|| {
            let worker_state = Arc::clone(&state);
            let run = Arc::new(move |job: Job| {
                let _done = DoneGuard(&worker_state.pending);
                worker_state.run_search(
                    job.key,
                    job.ident,
                    &job.sample,
                    job.len,
                    job.elem_size,
                    job.reason,
                );
            });
            Workers::start(config.search_threads, config.search_queue, run)
        });
        Self {
            state,
            workers: workers.flatten(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &TunerConfig {
        &self.state.config
    }

    /// Searches `data` now, without the cache or the size threshold; judge the result
    /// with [`Search::evaluate`] and [`TunerConfig::objective`].
    pub fn search(
        &self,
        data: &[u8],
        elem_size: usize,
    ) -> Result<Search, crate::codec::CodecError> {
        search(data, elem_size, self.state.config.search_params())
    }

    /// Blocks until no background search is queued or running (returns at once when
    /// searching in `choose`).
    pub fn wait_idle(&self) {
        self.state.pending.wait_idle();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TunerStats {
        let entries = self.state.shards.iter().map(|s| lock(s).len()).sum();
        self.state.counters.snapshot(entries)
    }

    /// Choices per model: the first [`MAX_MODEL_LABELS`] models seen, then
    /// [`OTHER_MODEL`] for the rest.
    pub fn choices_by_model(&self) -> Vec<ModelChoices> {
        self.state.counters.by_model()
    }

    /// The current pick of every remembered key, sorted by method, model, tensor name.
    pub fn picks(&self) -> Vec<TunerPick> {
        let mut picks: Vec<TunerPick> = self
            .state
            .shards
            .iter()
            .flat_map(|s| {
                lock(s)
                    .values()
                    .map(|e| TunerPick {
                        method: e.ident.method.to_string(),
                        model: e.ident.model.to_string(),
                        name: e.ident.name.to_string(),
                        dtype: e.ident.dtype,
                        options: e.last.and_then(|(l, _)| l.pick),
                        sample_ratio: e.last.map_or(1.0, |(l, _)| l.ratio),
                        link_bytes_per_sec: e.last.map(|(_, link)| link),
                        measured: e.candidates.is_some(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        picks.sort_by(|a, b| (&a.method, &a.model, &a.name).cmp(&(&b.method, &b.model, &b.name)));
        picks
    }

    /// A prometheus-client collector over this tuner.
    pub fn collector(self: &Arc<Self>) -> TunerCollector {
        TunerCollector::new(Arc::clone(self))
    }

    /// Starts a search of `t`'s key on a background thread, or in this thread when
    /// there is none; `false` when it was not started (budget spent, queue full).
    fn start_search(&self, key: u64, t: &TensorInfo<'_>, data: &[u8], reason: TuneReason) -> bool {
        let state = &*self.state;
        let c = &state.config;
        if !state.budget.take() {
            state
                .counters
                .skipped_budget
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let sampled = sample(data, t.elem_size, c.sample_block, c.sample_blocks);
        let Some(workers) = &self.workers else {
            state.run_search(key, Ident::of(t), &sampled, data.len(), t.elem_size, reason);
            return true;
        };
        let job = Job {
            key,
            ident: Ident::of(t),
            sample: sampled.into_owned(),
            len: data.len(),
            elem_size: t.elem_size,
            reason,
        };
        state.pending.add();
        if workers.submit(job).is_err() {
            state.pending.done();
            state
                .counters
                .skipped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl State {
    fn key(&self, t: &TensorInfo<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        t.method.hash(&mut h);
        t.model.hash(&mut h);
        t.name.hash(&mut h);
        t.dtype.hash(&mut h);
        h.finish()
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, HashMap<u64, Entry>> {
        lock(&self.shards[(key as usize) % SHARDS])
    }

    /// The link rate in bytes/s that settings are judged at: the configured one, else
    /// the measured one; `None` when neither is known (or usable).
    fn link_rate(&self, measured: Option<f64>) -> Option<f64> {
        let usable = |r: &f64| r.is_finite() && *r > 0.0;
        self.config
            .link_mbps
            .map(mbps_to_bytes_per_sec)
            .filter(usable)
            .or(measured.filter(usable))
    }

    /// Runs `f` on `t`'s entry, remembering the key first when it is new.
    fn with_entry<R>(&self, key: u64, t: &TensorInfo<'_>, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut shard = self.shard(key);
        let fresh = !shard.get(&key).is_some_and(|e| e.ident.is(t));
        if fresh {
            self.make_room(&mut shard, key);
        }
        let entry = match shard.entry(key) {
            hash_map::Entry::Occupied(o) => {
                let e = o.into_mut();
                if fresh {
                    // Another key with the same hash: this one replaces it.
                    *e = self.new_entry(Ident::of(t));
                }
                e
            }
            hash_map::Entry::Vacant(v) => v.insert(self.new_entry(Ident::of(t))),
        };
        f(entry)
    }

    fn new_entry(&self, ident: Ident) -> Entry {
        Entry {
            model_slot: self.counters.model_slot(&ident.model),
            ident,
            candidates: None,
            messages: 0,
            uses: 0,
            recheck_after: self.config.recheck_every,
            baseline: None,
            drifted: false,
            searching: false,
            last: None,
            realtime: RealTimeCheck::default(),
        }
    }

    /// Forgets an arbitrary key when `key` is new and the shard is full: a forgotten key
    /// is searched again if it comes back.
    fn make_room(&self, shard: &mut HashMap<u64, Entry>, key: u64) {
        let per_shard = self.config.max_entries.div_ceil(SHARDS).max(1);
        if !shard.contains_key(&key)
            && shard.len() >= per_shard
            && let Some(&victim) = shard.keys().next()
        {
            shard.remove(&victim);
        }
    }

    /// The answer for a tensor of `len` bytes of `e`'s key at link rate `link`.
    fn decide(&self, e: &mut Entry, len: usize, link: Option<f64>) -> Decision {
        let Some(candidates) = &e.candidates else {
            return Decision::Provisional;
        };
        let Some(link) = link else {
            return Decision::ColdStart;
        };
        if e.realtime.storing(e.messages) {
            return Decision::Fallback;
        }
        let eval = self.config.objective().best(candidates, len, link);
        if e.last.is_none_or(|(last, _)| last.pick != eval.pick) {
            tracing::debug!(
                method = &*e.ident.method,
                model = &*e.ident.model,
                tensor = &*e.ident.name,
                dtype = %e.ident.dtype,
                bytes = len,
                link_mbps = link * 8.0 / 1e6,
                pick = %eval.pick.map_or_else(|| "store".to_owned(), |o| o.to_string()),
                sample_ratio = eval.ratio,
                estimate_ms = eval.estimate_secs * 1e3,
                store_ms = eval.store_secs * 1e3,
                "tuner pick"
            );
        }
        e.last = Some((eval, link));
        match eval.pick {
            Some(options) => Decision::Compress(options),
            None => Decision::Store,
        }
    }

    /// Searches a sample of `len` bytes of `ident`'s key and remembers the result.
    fn run_search(
        &self,
        key: u64,
        ident: Ident,
        sample: &[u8],
        len: usize,
        elem_size: usize,
        reason: TuneReason,
    ) {
        let start = Stopwatch::start();
        let result = search_sample(sample, len, elem_size, self.config.search_params());
        let elapsed = start.elapsed();
        self.counters.searched(reason);
        self.counters.search_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let (candidates, recheck_after) = match result {
            Ok(s) => {
                let recheck_after = self.recheck_after(elapsed.as_secs_f64(), &s);
                tracing::debug!(
                    method = &*ident.method,
                    model = &*ident.model,
                    tensor = &*ident.name,
                    dtype = %ident.dtype,
                    bytes = len,
                    reason = reason.name(),
                    trials = s.trials.len(),
                    candidates = s.candidates.len(),
                    best_sample_ratio = s.candidates.iter().map(Measurement::ratio).fold(1.0, f64::max),
                    search_us = elapsed.as_micros() as u64,
                    recheck_after,
                    "tuner search"
                );
                (s.candidates, recheck_after)
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    method = &*ident.method,
                    model = &*ident.model,
                    tensor = &*ident.name,
                    error = %e,
                    "tuner search failed; sending uncompressed"
                );
                (Vec::new(), self.config.recheck_every)
            }
        };
        let mut shard = self.shard(key);
        if !shard.get(&key).is_some_and(|e| e.ident == ident) {
            // Forgotten (or replaced) while searching: remembered again.
            self.make_room(&mut shard, key);
            let entry = self.new_entry(ident);
            shard.insert(key, entry);
        }
        if let Some(e) = shard.get_mut(&key) {
            e.candidates = Some(candidates.into_boxed_slice());
            e.uses = 0;
            e.recheck_after = recheck_after;
            e.baseline = None;
            e.drifted = false;
            e.searching = false;
        }
    }

    /// Messages until the next periodic search: at least `recheck_every`, and enough
    /// that a search of `search_secs` stays within the budget of the messages' own
    /// Blosc work with the cheapest measured setting.
    fn recheck_after(&self, search_secs: f64, search: &Search) -> u64 {
        let message_secs = search
            .candidates
            .iter()
            .map(|m| m.cpu_secs(search.len))
            .filter(|s| *s > 0.0)
            .fold(f64::INFINITY, f64::min);
        let budget = self.config.search_budget * message_secs;
        let spaced = if budget > 0.0 && budget.is_finite() {
            (search_secs / budget).ceil()
        } else {
            0.0
        };
        // Saturating float-to-int conversion: an enormous spacing means "practically never".
        (spaced as u64).max(self.config.recheck_every)
    }
}

impl Chooser for Tuner {
    fn min_tensor_len(&self) -> usize {
        self.state.config.min_size
    }

    fn choose(&self, tensor: &TensorInfo<'_>, data: &[u8]) -> Option<CompressOptions> {
        let state = &*self.state;
        // Judged for the whole tensor, of which `data` may be the first chunk only.
        let len = tensor.len.max(data.len());
        if len < state.config.min_size {
            state
                .counters
                .below_min_size
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let link = state.link_rate(tensor.link_bytes_per_sec);
        let key = state.key(tensor);
        let (mut decision, due, model_slot) = state.with_entry(key, tensor, |e| {
            e.messages += 1;
            e.uses += 1;
            let due = e.take_due();
            (state.decide(e, len, link), due, e.model_slot)
        });
        if let Some(reason) = due {
            let started = self.start_search(key, tensor, data, reason);
            if !started || self.workers.is_none() {
                // Not started: a later message tries again. Searched in this thread: the
                // answer comes from the new result.
                decision = state.with_entry(key, tensor, |e| {
                    e.searching = false;
                    state.decide(e, len, link)
                });
            }
        }
        state.counters.decided(model_slot, decision);
        decision.options()
    }

    fn observe(&self, tensor: &TensorInfo<'_>, outcome: &TensorOutcome) {
        if outcome.compressed_len == 0 || outcome.original_len == 0 {
            return;
        }
        let ratio = outcome.original_len as f64 / outcome.compressed_len as f64;
        let state = &*self.state;
        let key = state.key(tensor);
        let mut shard = state.shard(key);
        let Some(e) = shard.get_mut(&key).filter(|e| e.ident.is(tensor)) else {
            return;
        };
        // Relative to what the search measured for the same setting: outcomes of a
        // setting it did not measure (a fixed chooser's, say) are not its concern.
        let Some(sampled) = e
            .candidates
            .iter()
            .flatten()
            .find(|m| m.options == Some(outcome.options))
            .map(Measurement::ratio)
        else {
            return;
        };
        let relative = ratio / sampled;
        match e.baseline {
            None => e.baseline = Some(relative),
            Some(base) if (relative / base - 1.0).abs() > state.config.drift && !e.drifted => {
                e.drifted = true;
                tracing::debug!(
                    method = tensor.method,
                    model = tensor.model,
                    tensor = tensor.name,
                    baseline_ratio = base * sampled,
                    ratio,
                    "tuner saw the ratio drift; searching again"
                );
            }
            Some(_) => {}
        }
    }

    fn observe_cost(&self, tensor: &TensorInfo<'_>, cost: &MessageCost) {
        // Stored tensors cost what storing costs: nothing to compare.
        if cost.original_len == 0 || cost.compress_secs <= 0.0 {
            return;
        }
        let state = &*self.state;
        let usable = |r: &f64| r.is_finite() && *r > 0.0;
        let Some(link) = cost
            .link_bytes_per_sec
            .filter(usable)
            .or_else(|| state.link_rate(tensor.link_bytes_per_sec))
        else {
            return;
        };
        let c = &state.config;
        let key = state.key(tensor);
        let mut shard = state.shard(key);
        let Some(e) = shard.get_mut(&key).filter(|e| e.ident.is(tensor)) else {
            return;
        };
        // The peer's time when it reported it, else the search's estimate for the
        // setting in use, else this side's compression time (decompression is rarely
        // slower).
        let decompress_secs = cost
            .peer_decompress_secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .or_else(|| {
                let pick = e.last.and_then(|(l, _)| l.pick)?;
                let m = e
                    .candidates
                    .iter()
                    .flatten()
                    .find(|m| m.options == Some(pick))?;
                Some(m.decompress_secs(cost.original_len))
            })
            .unwrap_or(cost.compress_secs);
        let objective = c.objective();
        let actual = objective.pipelined_secs(
            cost.original_len,
            [
                cost.compress_secs,
                cost.wire_len as f64 / link,
                decompress_secs,
            ],
        );
        let store = objective.store_secs(cost.original_len, link);
        let paid = actual < store;
        if let Some(backoff) =
            e.realtime
                .record(paid, e.messages, c.fallback_backoff, c.fallback_backoff_max)
        {
            state.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                method = tensor.method,
                model = tensor.model,
                tensor = tensor.name,
                actual_ms = actual * 1e3,
                store_ms = store * 1e3,
                backoff_messages = backoff,
                "tuner: compression did not pay on real messages; storing"
            );
        }
    }
}

/// A poisoned shard only means a thread panicked while holding it; the map itself is
/// always consistent (every update is a single insert or field write).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
