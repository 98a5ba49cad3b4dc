//! Encoding one message while its bytes arrive: the sending half of the streamed
//! container (wire format version 2, `container::stream`).
//!
//! A [`StreamEncoder`] is fed the message's bytes in order. A streaming walk (or, for a
//! message held whole, the located ranges) tells which bytes are tensor payload; the
//! chooser decides per tensor, from its first chunk, whether and how to compress it.
//! The encoder answers with [`Out`] pieces in wire order:
//!
//! - while nothing worth compressing has been seen, plain bytes are held back (at most
//!   one chunk); if a whole chunk of them passes, or the message ends, without a tensor
//!   to compress, the message goes as identity and the rest streams through untouched;
//! - once a tensor is to be compressed, a container opens: the header record, then plain
//!   segments for the bytes around tensors and one Blosc segment per chunk of tensor.
//!
//! Compressing is CPU-bound, so it is handed out as a [`CompressJob`] for the caller to
//! run off its async threads. Nothing here does I/O, and memory is bounded by the chunk
//! length whatever the message's size.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::container::stream::{blosc_segment, header_record, plain_segment_head};
use crate::locate::{ModelId, Span, StreamWalk, TensorRange, TensorStart};
use crate::log_limit::{LogSite, warn_limited};
use crate::message::{Chooser, MessageCost, TensorInfo, TensorOutcome};
use crate::{CompressOptions, DType};

/// Restored bytes per segment the encoder writes by default: large enough for Blosc's
/// blocks and ratios, small enough that one chunk's compress and decompress time (the
/// pipeline's fill and drain) stays a few milliseconds.
pub const DEFAULT_CHUNK_LEN: usize = 1 << 20;

/// One piece of the encoded stream, in wire order.
#[derive(Debug)]
pub enum Out {
    /// An identity message of this many bytes begins (gRPC flag 0).
    IdentityStart(usize),
    /// The next bytes of the identity message.
    Raw(Bytes),
    /// One record of the container (a gRPC message with flag 1), in parts.
    Record(Vec<Bytes>),
    /// A Blosc segment record still to be compressed.
    Compress(CompressJob),
    /// The message is complete.
    End(MessageSummary),
}

impl Out {
    /// Bytes of the message this piece holds until it is sent, counting what it will
    /// become: a record's payload (its head and prefix are framing), a raw piece's
    /// bytes, and a compress job's chunk twice (the chunk, and its compressed form,
    /// which Blosc never makes larger than the chunk but for a header).
    pub fn held_len(&self) -> usize {
        match self {
            Out::Raw(bytes) => bytes.len(),
            Out::Record(parts) => parts.iter().skip(1).map(Bytes::len).sum(),
            Out::Compress(job) => 2 * job.restored_len(),
            Out::IdentityStart(_) | Out::End(_) => 0,
        }
    }
}

/// What became of one message, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSummary {
    /// Its plain length.
    pub len: usize,
    /// Whether it went as a container (else as identity).
    pub encoded: bool,
    /// When its first byte reached the encoder.
    pub started: Instant,
    /// The setting of its first compressed tensor, if any (for its trace span).
    pub options: Option<CompressOptions>,
}

/// Where the tensor ranges of the message come from.
enum Spans {
    /// A streaming walk over the bytes as they come.
    Walk(StreamWalk),
    /// Ranges located in a message held whole: (offset, tensor), sorted.
    Ranges(std::vec::IntoIter<(usize, TensorStart)>),
}

/// Whether the message has been committed to a form on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Plain bytes are held back until a tensor is chosen or a chunk's worth passed.
    Undecided,
    /// Identity: the prefix is out, the rest streams through.
    Identity,
    /// A container: the header is out, segments follow.
    Container,
}

/// What is done with the current tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Its first chunk is being gathered for the chooser.
    Pending,
    /// It travels as it is.
    Store,
    /// Compressed with this setting.
    Compress(CompressOptions),
}

struct Tensor {
    start: TensorStart,
    remaining: usize,
    chunk: BytesMut,
    decision: Decision,
    /// Restored bytes per Blosc segment: the chunk length rounded down to whole elements.
    chunk_len: usize,
    tally: Option<Arc<TensorTally>>,
}

/// A call's model key, learned once (e.g. `resnet50:1`).
pub type ModelSlot = Arc<OnceLock<String>>;

/// The tuner's key for a model: name, then version and signature when given.
pub fn model_key(model: &ModelId) -> String {
    let mut key = model.name.clone();
    for part in [&model.version, &model.signature] {
        if !part.is_empty() {
            key.push(':');
            key.push_str(part);
        }
    }
    key
}

/// The settings of a [`StreamEncoder`].
#[derive(Clone)]
pub struct EncoderContext {
    /// Picks each tensor's setting.
    pub chooser: Arc<dyn Chooser>,
    /// The gRPC method of the message.
    pub method: Arc<str>,
    /// The model the call names, as the tuner keys it: set by whoever learns it first
    /// (the request's walk, or the side that restored the request), read by both
    /// directions of the call.
    pub model: ModelSlot,
    /// The measured goodput of the link to the peer, bytes per second.
    pub link_bytes_per_sec: Option<f64>,
    /// Restored bytes per segment.
    pub chunk_len: usize,
    /// Where what each compressed tensor cost goes; `None`: straight to the chooser.
    pub costs: Option<Arc<dyn CostSink>>,
}

/// Takes what compressing a tensor cost, e.g. to add the peer's decompression time
/// before the chooser's real-time check sees it.
pub trait CostSink: Send + Sync + 'static {
    /// One compressed tensor's cost; `tensor` names it as the chooser keys it.
    fn report(&self, tensor: OwnedTensorInfo, cost: MessageCost);
}

/// A [`TensorInfo`] that owns its strings, to report after the message has gone.
#[derive(Debug, Clone)]
pub struct OwnedTensorInfo {
    /// gRPC method path.
    pub method: Arc<str>,
    /// The model key ("" when none).
    pub model: String,
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Blosc typesize used.
    pub elem_size: usize,
    /// The link rate the pick was made for.
    pub link_bytes_per_sec: Option<f64>,
    /// Bytes of the whole tensor.
    pub len: usize,
}

impl OwnedTensorInfo {
    /// The borrowed form the chooser takes.
    pub fn as_info(&self) -> TensorInfo<'_> {
        TensorInfo {
            method: &self.method,
            name: &self.name,
            dtype: self.dtype,
            elem_size: self.elem_size,
            model: &self.model,
            link_bytes_per_sec: self.link_bytes_per_sec,
            len: self.len,
        }
    }
}

/// Encodes one message of a known length as it arrives.
pub struct StreamEncoder {
    context: EncoderContext,
    len: usize,
    fed: usize,
    spans: Spans,
    scratch: Vec<Span>,
    form: Form,
    pending: BytesMut,
    tensor: Option<Tensor>,
    started: Instant,
    /// The setting of the first tensor compressed.
    first_options: Option<CompressOptions>,
}

impl StreamEncoder {
    /// An encoder for a message of `len` bytes whose tensors `walk` finds as it goes.
    pub fn streaming(context: EncoderContext, len: usize, walk: StreamWalk) -> Self {
        Self::new(context, len, Spans::Walk(walk))
    }

    /// An encoder for a message held whole, with tensors at `ranges` (sorted, disjoint,
    /// inside the message). Feed it the message in one piece or several.
    pub fn whole(context: EncoderContext, len: usize, ranges: &[TensorRange<'_>]) -> Self {
        let ranges: Vec<(usize, TensorStart)> = ranges
            .iter()
            .filter(|r| r.len > 0 && r.offset.checked_add(r.len).is_some_and(|e| e <= len))
            .map(|r| {
                (
                    r.offset,
                    TensorStart {
                        len: r.len,
                        elem_size: r.elem_size,
                        name: r.name.to_owned(),
                        dtype: r.dtype,
                    },
                )
            })
            .collect();
        Self::new(context, len, Spans::Ranges(ranges.into_iter()))
    }

    fn new(context: EncoderContext, len: usize, spans: Spans) -> Self {
        StreamEncoder {
            context,
            len,
            fed: 0,
            spans,
            scratch: Vec::new(),
            form: Form::Undecided,
            pending: BytesMut::new(),
            tensor: None,
            started: Instant::now(),
            first_options: None,
        }
    }

    /// The model the message names, when the walk has seen it.
    pub fn model(&self) -> Option<&ModelId> {
        match &self.spans {
            Spans::Walk(walk) => walk.model(),
            Spans::Ranges(_) => None,
        }
    }

    /// Feeds the next bytes of the message; appends what can be sent to `out`. After the
    /// message's last byte, `out` ends with [`Out::End`].
    pub fn feed(&mut self, bytes: Bytes, out: &mut Vec<Out>) {
        let bytes = bytes.slice(..bytes.len().min(self.len - self.fed));
        if self.fed == 0 && !bytes.is_empty() {
            self.started = Instant::now();
        }
        let base = self.fed;
        self.fed += bytes.len();
        let mut spans = std::mem::take(&mut self.scratch);
        spans.clear();
        match &mut self.spans {
            Spans::Walk(walk) => walk.feed(&bytes, &mut spans),
            Spans::Ranges(ranges) => range_spans(ranges, base, bytes.len(), &mut spans),
        }
        let mut at = 0;
        for span in spans.drain(..) {
            match span {
                Span::Plain(n) => {
                    self.plain(bytes.slice(at..at + n), out);
                    at += n;
                }
                Span::Tensor { len, start } => {
                    if let Some(start) = start {
                        self.begin_tensor(start);
                    }
                    self.tensor_bytes(bytes.slice(at..at + len), out);
                    at += len;
                }
            }
        }
        // A walk covers what it is fed; anything it left out is plain.
        if at < bytes.len() {
            self.plain(bytes.slice(at..), out);
        }
        self.scratch = spans;
        if self.fed == self.len {
            self.finish(out);
        }
    }

    /// Bytes fed but not yet handed out: plain bytes held back, and the current
    /// tensor's chunk being gathered.
    pub fn held_len(&self) -> usize {
        self.pending.len() + self.tensor.as_ref().map_or(0, |t| t.chunk.len())
    }

    /// Hands out what is held back now, so that a caller about to wait for memory holds
    /// nothing that only more input could release: the held plain bytes as plain
    /// segments, and the whole elements of the tensor's chunk as a shorter chunk (Blosc
    /// segments may restore any length). A message not yet committed to a form becomes
    /// a container, and a tensor not yet decided is decided on what was gathered. At
    /// most one element's bytes stay behind, so that later chunks keep whole elements.
    pub fn flush(&mut self, out: &mut Vec<Out>) {
        if self.held_len() == 0 {
            return;
        }
        if self
            .tensor
            .as_ref()
            .is_some_and(|t| t.decision == Decision::Pending && !t.chunk.is_empty())
        {
            self.decide(out);
        }
        if self.form == Form::Undecided {
            self.commit_container(out);
        }
        if let Some(tensor) = self.tensor.as_mut() {
            let elem = tensor.start.elem_size.max(1);
            let whole = tensor.chunk.len() / elem * elem;
            let partial = tensor.chunk.split_off(whole);
            self.send_chunk(out);
            if let Some(tensor) = self.tensor.as_mut() {
                tensor.chunk = partial;
            }
        }
        self.flush_plain(out);
    }

    fn begin_tensor(&mut self, start: TensorStart) {
        let elem = start.elem_size.max(1);
        let chunk_len = (self.context.chunk_len / elem).max(1) * elem;
        self.tensor = Some(Tensor {
            remaining: start.len,
            chunk: BytesMut::new(),
            decision: if self.form == Form::Identity {
                Decision::Store
            } else {
                Decision::Pending
            },
            chunk_len,
            tally: None,
            start,
        });
    }

    fn plain(&mut self, bytes: Bytes, out: &mut Vec<Out>) {
        if bytes.is_empty() {
            return;
        }
        match self.form {
            Form::Identity => out.push(Out::Raw(bytes)),
            Form::Container => {
                self.pending.extend_from_slice(&bytes);
                if self.pending.len() >= self.context.chunk_len {
                    self.flush_plain(out);
                }
            }
            Form::Undecided => {
                self.pending.extend_from_slice(&bytes);
                if self.pending.len() >= self.context.chunk_len {
                    self.commit_identity(out);
                }
            }
        }
    }

    fn tensor_bytes(&mut self, mut bytes: Bytes, out: &mut Vec<Out>) {
        while !bytes.is_empty() {
            let Some(tensor) = self.tensor.as_mut() else {
                // Bytes a walk calls tensor without a start: plain, to be safe.
                self.plain(bytes, out);
                return;
            };
            let take = bytes.len().min(tensor.remaining);
            if take == 0 {
                // A tensor that claims no more bytes: the rest is plain.
                self.tensor = None;
                continue;
            }
            let piece = bytes.split_to(take);
            tensor.remaining -= take;
            self.gather(piece, out);
        }
    }

    /// Adds tensor bytes to the current chunk; decides on the first full chunk and sends
    /// each full chunk. Once the tensor is to be stored, its bytes (the chunk held so far
    /// first) go as plain bytes.
    fn gather(&mut self, mut piece: Bytes, out: &mut Vec<Out>) {
        loop {
            let Some(tensor) = self.tensor.as_mut() else {
                self.plain(piece, out);
                return;
            };
            if tensor.decision == Decision::Store {
                let held = tensor.chunk.split().freeze();
                if tensor.remaining == 0 {
                    self.tensor = None;
                }
                self.plain(held, out);
                self.plain(piece, out);
                return;
            }
            let room = tensor.chunk_len - tensor.chunk.len();
            let take = room.min(piece.len());
            tensor.chunk.extend_from_slice(&piece.split_to(take));
            let full = tensor.chunk.len() == tensor.chunk_len;
            let last = tensor.remaining == 0 && piece.is_empty();
            if !full && !last {
                return;
            }
            if tensor.decision == Decision::Pending {
                self.decide(out);
            }
            self.send_chunk(out);
            if last {
                self.tensor = None;
                return;
            }
            if piece.is_empty() {
                return;
            }
        }
    }

    /// Asks the chooser about the current tensor, from its first chunk.
    fn decide(&mut self, out: &mut Vec<Out>) {
        if self.context.model.get().is_none()
            && let Spans::Walk(walk) = &self.spans
            && let Some(model) = walk.model()
        {
            let _ = self.context.model.set(model_key(model));
        }
        let Some(tensor) = self.tensor.as_mut() else {
            return;
        };
        let model = self.context.model.get().map_or("", String::as_str);
        let info = TensorInfo {
            method: &self.context.method,
            name: &tensor.start.name,
            dtype: tensor.start.dtype,
            elem_size: tensor.start.elem_size,
            model,
            link_bytes_per_sec: self.context.link_bytes_per_sec,
            len: tensor.start.len,
        };
        let options = self.context.chooser.choose(&info, &tensor.chunk);
        tensor.decision = match options {
            Some(options) => Decision::Compress(options),
            None => Decision::Store,
        };
        if let Decision::Compress(options) = tensor.decision {
            self.first_options.get_or_insert(options);
            tensor.tally = Some(Arc::new(TensorTally::new(
                &self.context,
                &tensor.start,
                options,
            )));
            if self.form == Form::Undecided {
                self.commit_container(out);
            }
        }
    }

    /// Sends the current tensor's chunk: compressed, or as plain bytes when stored.
    fn send_chunk(&mut self, out: &mut Vec<Out>) {
        let Some(tensor) = self.tensor.as_mut() else {
            return;
        };
        let chunk = tensor.chunk.split().freeze();
        if chunk.is_empty() {
            return;
        }
        // Blosc stored an earlier chunk as it was: the rest of the tensor is sent plain
        // rather than spending CPU on both sides for nothing.
        if let Some(tally) = tensor.tally.as_ref()
            && tally.incompressible.load(Ordering::Relaxed)
        {
            tensor.decision = Decision::Store;
            tally.seal();
        }
        match (tensor.decision, self.form) {
            (Decision::Compress(options), Form::Container) => {
                let tally = tensor.tally.clone();
                if let Some(tally) = &tally {
                    tally.chunks_out.fetch_add(1, Ordering::AcqRel);
                    if tensor.remaining == 0 {
                        tally.seal();
                    }
                }
                self.flush_plain(out);
                out.push(Out::Compress(CompressJob {
                    data: chunk,
                    typesize: tensor_typesize(self.tensor.as_ref()),
                    options,
                    tally,
                }));
            }
            _ => self.plain(chunk, out),
        }
    }

    fn commit_identity(&mut self, out: &mut Vec<Out>) {
        self.form = Form::Identity;
        out.push(Out::IdentityStart(self.len));
        let held = self.pending.split().freeze();
        if !held.is_empty() {
            out.push(Out::Raw(held));
        }
        if let Some(tensor) = self.tensor.as_mut() {
            tensor.decision = Decision::Store;
        }
    }

    fn commit_container(&mut self, out: &mut Vec<Out>) {
        self.form = Form::Container;
        out.push(Out::Record(vec![Bytes::copy_from_slice(&header_record(
            self.len as u64,
        ))]));
        self.flush_plain(out);
    }

    /// Sends the held plain bytes as plain segments of at most one chunk each.
    fn flush_plain(&mut self, out: &mut Vec<Out>) {
        while !self.pending.is_empty() {
            let take = self.pending.len().min(self.context.chunk_len);
            let data = self.pending.split_to(take).freeze();
            let head = plain_segment_head(&data).expect("a segment is at most one chunk long");
            out.push(Out::Record(vec![Bytes::copy_from_slice(&head), data]));
        }
    }

    fn finish(&mut self, out: &mut Vec<Out>) {
        // A tensor cut short by a lying walk still has its gathered bytes to send.
        if let Some(tensor) = self.tensor.as_mut() {
            tensor.remaining = 0;
            if tensor.decision == Decision::Pending {
                tensor.decision = Decision::Store;
            }
            self.send_chunk(out);
            self.tensor = None;
        }
        match self.form {
            Form::Undecided => self.commit_identity(out),
            Form::Container => self.flush_plain(out),
            Form::Identity => {}
        }
        out.push(Out::End(MessageSummary {
            len: self.len,
            encoded: self.form == Form::Container,
            started: self.started,
            options: self.first_options.filter(|_| self.form == Form::Container),
        }));
    }
}

fn tensor_typesize(tensor: Option<&Tensor>) -> usize {
    tensor.map_or(1, |t| t.start.elem_size)
}

/// Splits `len` bytes at message offset `base` into spans from sorted `ranges`.
fn range_spans(
    ranges: &mut std::vec::IntoIter<(usize, TensorStart)>,
    base: usize,
    len: usize,
    spans: &mut Vec<Span>,
) {
    // Whole messages are fed in one piece by the layer; a range cut by a later piece is
    // tracked by the encoder's current tensor, so only starts matter here.
    let end = base + len;
    let mut at = base;
    while at < end {
        let next = ranges.as_slice().first().map(|(offset, _)| *offset);
        match next {
            Some(offset) if offset < end && offset >= at => {
                if offset > at {
                    spans.push(Span::Plain(offset - at));
                }
                let (offset, start) = ranges.next().expect("peeked");
                let tensor_len = start.len.min(end - offset);
                at = offset + tensor_len;
                spans.push(Span::Tensor {
                    len: tensor_len,
                    start: Some(start),
                });
            }
            Some(offset) if offset < at => {
                // Overlapping or out of order: ignored.
                ranges.next();
            }
            _ => {
                spans.push(Span::Plain(end - at));
                at = end;
            }
        }
    }
}

/// Counts one compressed tensor's chunks and tells the chooser the outcome once all of
/// them were compressed (the chooser watches ratios for drift).
struct TensorTally {
    chooser: Arc<dyn Chooser>,
    costs: Option<Arc<dyn CostSink>>,
    tensor: OwnedTensorInfo,
    options: CompressOptions,
    original_len: usize,
    compressed_len: AtomicUsize,
    /// Bytes of the tensor that went through Blosc (the rest was sent plain).
    restored_len: AtomicUsize,
    nanos: AtomicU64,
    chunks_out: AtomicUsize,
    chunks_done: AtomicUsize,
    /// Every chunk of the tensor has been handed out.
    sealed: AtomicBool,
    /// A chunk did not compress: Blosc stored it.
    incompressible: AtomicBool,
    reported: AtomicBool,
}

impl TensorTally {
    fn new(context: &EncoderContext, start: &TensorStart, options: CompressOptions) -> Self {
        TensorTally {
            chooser: Arc::clone(&context.chooser),
            costs: context.costs.clone(),
            tensor: OwnedTensorInfo {
                method: Arc::clone(&context.method),
                model: context.model.get().cloned().unwrap_or_default(),
                name: start.name.clone(),
                dtype: start.dtype,
                elem_size: start.elem_size,
                link_bytes_per_sec: context.link_bytes_per_sec,
                len: start.len,
            },
            options,
            original_len: start.len,
            compressed_len: AtomicUsize::new(0),
            restored_len: AtomicUsize::new(0),
            nanos: AtomicU64::new(0),
            chunks_out: AtomicUsize::new(0),
            chunks_done: AtomicUsize::new(0),
            sealed: AtomicBool::new(false),
            incompressible: AtomicBool::new(false),
            reported: AtomicBool::new(false),
        }
    }

    fn add(&self, restored_len: usize, compressed_len: usize, took: Duration) {
        if compressed_len >= restored_len {
            self.incompressible.store(true, Ordering::Relaxed);
        }
        self.restored_len.fetch_add(restored_len, Ordering::Relaxed);
        self.compressed_len
            .fetch_add(compressed_len, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.chunks_done.fetch_add(1, Ordering::AcqRel);
        self.report_when_complete();
    }

    /// No more chunks of the tensor will be handed out.
    fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
        self.report_when_complete();
    }

    /// Tells the chooser the outcome once, after every chunk handed out was compressed.
    /// Chunks finish in any order, and sealing may come last: whoever completes the
    /// count reports.
    fn report_when_complete(&self) {
        if !self.sealed.load(Ordering::Acquire)
            || self.chunks_done.load(Ordering::Acquire) != self.chunks_out.load(Ordering::Acquire)
            || self.reported.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let info = self.tensor.as_info();
        let outcome = TensorOutcome {
            name: self.tensor.name.clone(),
            dtype: self.tensor.dtype,
            options: self.options,
            original_len: self.original_len,
            compressed_len: self.compressed_len.load(Ordering::Relaxed),
            compress_time: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        };
        self.chooser.observe(&info, &outcome);
        let plain = self.original_len
            - self
                .restored_len
                .load(Ordering::Relaxed)
                .min(self.original_len);
        let cost = MessageCost {
            original_len: self.original_len,
            wire_len: outcome.compressed_len + plain,
            compress_secs: outcome.compress_time.as_secs_f64(),
            peer_decompress_secs: None,
            link_bytes_per_sec: self.tensor.link_bytes_per_sec,
        };
        match &self.costs {
            Some(sink) => sink.report(self.tensor.clone(), cost),
            None => self.chooser.observe_cost(&info, &cost),
        }
    }
}

/// One chunk of a tensor to compress into a Blosc segment record; CPU-bound, so run it
/// on a blocking pool.
pub struct CompressJob {
    data: Bytes,
    typesize: usize,
    options: CompressOptions,
    tally: Option<Arc<TensorTally>>,
}

impl std::fmt::Debug for CompressJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressJob")
            .field("len", &self.data.len())
            .field("typesize", &self.typesize)
            .field("options", &self.options)
            .finish()
    }
}

impl CompressJob {
    /// Bytes of tensor this job restores on the other side.
    pub fn restored_len(&self) -> usize {
        self.data.len()
    }

    /// The record: a Blosc segment, or a plain segment of the same bytes if Blosc fails
    /// (the message must still travel; the failure is logged).
    pub fn run(self) -> Bytes {
        let began = Instant::now();
        let record = match blosc_segment(&self.data, self.typesize, self.options) {
            Ok(record) => Bytes::from(record),
            Err(err) => {
                static COMPRESS_FAILED: LogSite = LogSite::new("chunk_compress_failed");
                warn_limited!(COMPRESS_FAILED, error = %err, options = %self.options, "compressing a chunk failed; sending it as plain bytes");
                let head = plain_segment_head(&self.data).expect("a chunk fits a segment");
                let mut record = BytesMut::with_capacity(head.len() + self.data.len());
                record.extend_from_slice(&head);
                record.extend_from_slice(&self.data);
                record.freeze()
            }
        };
        if let Some(tally) = &self.tally {
            tally.add(self.data.len(), record.len(), began.elapsed());
        }
        record
    }
}
