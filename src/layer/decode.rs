//! The decoding body: reads bloscar records from the peer and gives the app identity
//! messages, each verified segment forwarded as soon as it is restored.
//!
//! A container's header carries the restored length, so the identity prefix goes out
//! first; plain segments follow at once, Blosc segments after decompressing on the
//! blocking pool (up to [`MAX_JOBS_AHEAD`](super::pipeline::MAX_JOBS_AHEAD) at a time, in order). Identity messages from
//! the peer stream through without being held. Every record is checked by
//! `container::stream::StreamDecoder` before a byte of it reaches the app.
//!
//! What the body holds is charged to the memory budget ([`Account`]): identity bytes
//! per piece before they are taken in, and a segment record, with what it restores, once
//! it has been gathered and before the body reads on (the record being gathered is not
//! charged: see [`crate::budget`]). A record that is not a segment (a version-1
//! container is restored whole) is charged before it is gathered, with what it restores
//! as its first bytes declare. While the budget has no room the body stops reading.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use super::clock::Clock;
use super::encode::fail;
use super::feedback::CallCosts;
use super::intake::{Intake, budget_status};
use super::link::{self, SharedTiming};
use super::pipeline::{Output, Pipeline};
use super::{Role, Shared};
use crate::budget::{Account, Charge, Hold};
use crate::codec::tune::link::{LinkSample, SampleKind};
use crate::container::MAGIC;
use crate::container::stream::{HEADER_RECORD_LEN, Record, SegmentKind, StreamDecoder};
use crate::error::BoxError;
use crate::grpc::frame::{self, FrameDecoder, FrameEvent, prefix};
use crate::grpc::{Code, ErrorSlot, Status};
use crate::locate::Direction;
use crate::locate::StreamWalk;
use crate::metrics::Outcome;
use crate::stream_encoder::{MessageSummary, ModelSlot, Out, model_key};
use crate::trace::{self, Work};

/// Largest version-1 container accepted, and largest message one may restore: version 1
/// is read for senders that predate version 2, whose own message limit was this. A
/// version-1 message is restored whole, so this also bounds what one costs in memory.
const MAX_V1_RECORD: usize = 64 << 20;

/// Bytes a segment record may take beyond what it restores: its head and one Blosc
/// chunk header (Blosc stores data that does not compress, so a chunk never grows more).
const SEGMENT_OVERHEAD: usize = 64;

/// What the body does with the message being read.
enum Message {
    Idle,
    /// An identity message streaming through.
    Identity {
        len: usize,
        started: Instant,
    },
    /// A record of `len` bytes being gathered: a segment of the open container (at
    /// most a chunk), charged once complete; or, between containers (`whole`), a header
    /// or a version-1 container, charged once its first bytes say what it restores.
    Record {
        buf: BytesMut,
        len: usize,
        whole: bool,
        hold: Option<Hold>,
        charge: Option<Charge>,
    },
}

/// Bytes of a record between containers read before it is charged: enough for a header
/// record and for the message length of a version-1 container.
const PEEK_LEN: usize = HEADER_RECORD_LEN;

/// The container being restored, for metrics and its trace span.
struct Restoring {
    len: usize,
    wire_len: usize,
    started: Instant,
    span: tracing::Span,
    /// The compressor of its first Blosc chunk.
    codec: Option<&'static str>,
}

/// A restored container's span, waiting for its last bytes to be sent: with the bytes
/// it took on the wire and its first chunk's compressor.
type SpanToFinish = (tracing::Span, usize, Option<&'static str>);

/// What a decoding body knows of its call.
pub struct CallContext {
    /// The gRPC method.
    pub method: Arc<str>,
    /// Which way the body's messages travel.
    pub direction: Direction,
    /// Where a failure is left for the other side of the call.
    pub slot: ErrorSlot,
    /// How the call's bodies crossed the link.
    pub timing: SharedTiming,
    /// The model the call names: a request's decoder learns it for the response.
    pub model: ModelSlot,
    /// Outbound: the request's tensor costs, settled with the inbound's report.
    pub costs: Option<Arc<CallCosts>>,
    /// Where what the body holds is charged.
    pub account: Account,
    /// The call's span, parent of a span per restored container.
    pub span: tracing::Span,
}

/// Learns the model a request names from its first restored bytes (the model's fields
/// come first in every protocol bloscar knows).
struct ModelSniff {
    walk: StreamWalk,
    fed: usize,
}

/// Bytes of a request looked at for its model before giving up.
const MODEL_SNIFF_BYTES: usize = 64 * 1024;

pin_project! {
    /// A gRPC body whose bloscar records reach the app as identity messages.
    pub struct DecodeBody<B> {
        #[pin]
        inner: B,
        shared: Arc<Shared>,
        method: Arc<str>,
        direction: Direction,
        slot: ErrorSlot,
        timing: SharedTiming,
        model: ModelSlot,
        costs: Option<Arc<CallCosts>>,
        sniff: Option<ModelSniff>,
        clock: Clock,
        frames: FrameDecoder,
        decoder: StreamDecoder,
        message: Message,
        restoring: Option<Restoring>,
        pipeline: Pipeline,
        account: Account,
        intake: Intake,
        span: tracing::Span,
        message_spans: VecDeque<SpanToFinish>,
    }
}

impl<B> DecodeBody<B> {
    /// Decodes the records of `inner` for the call described by `call`.
    pub(super) fn new(inner: B, shared: Arc<Shared>, call: CallContext) -> Self {
        let decoder = StreamDecoder::new(*shared.codec.limits());
        DecodeBody {
            inner,
            pipeline: Pipeline::new(Arc::clone(&shared.jobs)),
            frames: FrameDecoder::new(shared.max_message_bytes),
            shared,
            method: call.method,
            direction: call.direction,
            slot: call.slot,
            timing: call.timing,
            model: call.model,
            costs: call.costs,
            sniff: None,
            clock: Clock::default(),
            decoder,
            message: Message::Idle,
            restoring: None,
            account: call.account,
            intake: Intake::default(),
            span: call.span,
            message_spans: VecDeque::new(),
        }
    }
}

/// The longest record accepted next, checked from its gRPC prefix before it is
/// gathered: a segment inside a container; otherwise a header or a version-1 container.
fn record_limit(shared: &Shared, open: bool) -> usize {
    if open {
        shared.codec.limits().max_segment_len + SEGMENT_OVERHEAD
    } else {
        MAX_V1_RECORD.min(shared.max_message_bytes)
    }
}

/// Bytes a record of `len` bytes holds until what it restores has been sent: itself,
/// plus what a Blosc segment or a version-1 container restores, as its first bytes
/// (`head`) declare. The claim is untrusted: beyond the limits the record fails its
/// checks anyway, so no more than the limits is reserved for it.
fn record_need(head: &[u8], len: usize, shared: &Shared) -> usize {
    let le = |range: std::ops::Range<usize>| {
        head.get(range).map(|b| {
            b.iter()
                .rev()
                .fold(0u64, |n, &byte| (n << 8) | u64::from(byte))
        })
    };
    let restored = if head.starts_with(&MAGIC) {
        // A header record restores nothing itself; a version-1 container, its message.
        let limit = MAX_V1_RECORD.min(shared.max_message_bytes) as u64;
        match len {
            HEADER_RECORD_LEN => 0,
            _ => le(12..20).map_or(0, |n| n.min(limit)),
        }
    } else if head.first() == Some(&SegmentKind::Blosc.id()) {
        let limit = shared.codec.limits().max_segment_len as u64;
        le(4..8).map_or(0, |n| n.min(limit))
    } else {
        // A plain segment's bytes go on as slices of the record itself.
        0
    };
    len + usize::try_from(restored).unwrap_or(usize::MAX)
}

impl<B> Body for DecodeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            match ready!(this.pipeline.poll_output(cx)) {
                Output::Data(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                // Only traced containers are marked (see `Reader::record`).
                Output::Sent(sent) => {
                    if let Some((span, wire_len, codec)) = this.message_spans.pop_front() {
                        trace::finish_decode(&span, wire_len, &sent, codec);
                    }
                    continue;
                }
                Output::Failed(status) => {
                    return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                }
                Output::Finished(trailers) => {
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
                Output::Done => return Poll::Ready(None),
                Output::NeedInput => {}
            }
            if !this.intake.is_empty() {
                let mut reader = Reader {
                    shared: this.shared,
                    method: this.method,
                    direction: *this.direction,
                    decoder: this.decoder,
                    message: this.message,
                    restoring: this.restoring,
                    pipeline: this.pipeline,
                    model: this.model,
                    sniff: this.sniff,
                    timing: this.timing,
                    account: this.account,
                    span: this.span,
                    message_spans: this.message_spans,
                };
                match reader.take(cx, this.intake, this.frames) {
                    Ok(true) => continue,
                    // Waiting for the budget; what was queued meanwhile goes first.
                    Ok(false) if this.pipeline.has_new_output() => continue,
                    // Not reading holds the peer back (a wait the clock does not count:
                    // it is not the link's).
                    Ok(false) => return Poll::Pending,
                    Err(status) => {
                        return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                    }
                }
            }
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    this.clock.idle();
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            let ended = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.clock.moved(data.len());
                        this.intake.fill(data);
                        continue;
                    }
                    Err(frame) => frame.into_trailers().ok(),
                },
                Some(Err(err)) => {
                    this.pipeline.stop();
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => None,
            };
            if !this.frames.at_boundary() {
                let status = frame::cut_mid_message();
                return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
            }
            if let Err(err) = this.decoder.finish() {
                let status = Status::from(&crate::Error::from(err));
                return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
            }
            let mut ended = ended;
            let mut timing = this.timing.lock().unwrap_or_else(|e| e.into_inner());
            timing.received = Some(this.clock.clone());
            // The outbound reads the inbound's report off the response's trailers.
            if this.shared.role == Role::Outbound
                && let Some(trailers) = ended.as_mut()
            {
                let report = link::take_report(trailers);
                if let Some(costs) = this.costs.as_ref() {
                    costs.settle(report.request_decode);
                }
                let now = Instant::now();
                for goodput in link::goodputs(&timing, &report) {
                    let sample = LinkSample {
                        bytes: goodput.bytes,
                        secs: goodput.secs,
                        kind: if goodput.link_bound {
                            SampleKind::Exact
                        } else {
                            SampleKind::AtLeast
                        },
                    };
                    let before = this.shared.link.rate(now);
                    if this.shared.link.record(sample, now) {
                        let after = this.shared.link.rate(now);
                        this.shared.metrics.record_link(goodput.link_bound, after);
                        log_link(this.shared, goodput, before, after);
                    }
                }
            }
            drop(timing);
            this.pipeline.end_input(ended);
        }
    }
}

/// The parts of the body that read the peer's stream.
struct Reader<'a> {
    shared: &'a Arc<Shared>,
    method: &'a Arc<str>,
    direction: Direction,
    decoder: &'a mut StreamDecoder,
    message: &'a mut Message,
    restoring: &'a mut Option<Restoring>,
    pipeline: &'a mut Pipeline,
    model: &'a ModelSlot,
    sniff: &'a mut Option<ModelSniff>,
    timing: &'a SharedTiming,
    account: &'a mut Account,
    span: &'a tracing::Span,
    message_spans: &'a mut VecDeque<SpanToFinish>,
}

impl Reader<'_> {
    /// Takes in the events of the frame in hand: `Ok(true)` once all are taken,
    /// `Ok(false)` when one waits for the budget (the waker is registered).
    fn take(
        &mut self,
        cx: &mut Context<'_>,
        intake: &mut Intake,
        frames: &mut FrameDecoder,
    ) -> Result<bool, Status> {
        while let Some(event) = intake.next(frames)? {
            if let Some(event) = self.event(cx, event)? {
                intake.put_back(event);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Handles one event; gives it back when it must wait for the budget.
    fn event(
        &mut self,
        cx: &mut Context<'_>,
        event: FrameEvent,
    ) -> Result<Option<FrameEvent>, Status> {
        match event {
            FrameEvent::Start { compressed, len } => {
                if !compressed {
                    if self.decoder.is_open() {
                        return Err(Status::new(
                            Code::Internal,
                            "bloscar: identity message inside a container",
                        ));
                    }
                    self.pipeline
                        .push_bytes(Bytes::copy_from_slice(&prefix(false, len)?));
                    self.start_sniff(len);
                    *self.message = Message::Identity {
                        len,
                        started: Instant::now(),
                    };
                } else {
                    let limit = record_limit(self.shared, self.decoder.is_open());
                    if len > limit {
                        return Err(Status::new(
                            Code::ResourceExhausted,
                            format!(
                                "bloscar record of {len} bytes exceeds the limit of {limit} bytes"
                            ),
                        ));
                    }
                    // A segment is gathered before it is charged (at most a chunk);
                    // anything else may be a message held whole.
                    let whole = !self.decoder.is_open() && len > PEEK_LEN;
                    *self.message = Message::Record {
                        buf: if whole {
                            BytesMut::new()
                        } else {
                            BytesMut::with_capacity(len)
                        },
                        len,
                        whole,
                        hold: None,
                        charge: None,
                    };
                }
            }
            FrameEvent::Data(mut bytes) => match self.message {
                Message::Identity { .. } => {
                    if !self.reserve(cx, bytes.len())? {
                        return Ok(Some(FrameEvent::Data(bytes)));
                    }
                    self.sniff(&bytes);
                    let charge = self.account.take(bytes.len());
                    self.pipeline.push_charged(bytes, charge);
                }
                Message::Record {
                    buf,
                    len,
                    whole: true,
                    charge: None,
                    ..
                } => {
                    let peek = (*len).min(PEEK_LEN);
                    let take = peek.saturating_sub(buf.len()).min(bytes.len());
                    buf.extend_from_slice(&bytes.split_to(take));
                    if buf.len() < peek {
                        return Ok(None);
                    }
                    if !self.charge_record(cx)? {
                        return Ok(Some(FrameEvent::Data(bytes)));
                    }
                    if let Message::Record { buf, .. } = self.message {
                        buf.extend_from_slice(&bytes);
                    }
                }
                Message::Record { buf, .. } => buf.extend_from_slice(&bytes),
                Message::Idle => {
                    return Err(Status::new(Code::Internal, "message bytes before a prefix"));
                }
            },
            FrameEvent::End => {
                // A segment (or a record shorter than the peek) is charged once it is all
                // here, before anything after it is read.
                if matches!(self.message, Message::Record { charge: None, .. })
                    && !self.charge_record(cx)?
                {
                    return Ok(Some(FrameEvent::End));
                }
                match std::mem::replace(self.message, Message::Idle) {
                    Message::Identity { len, started } => {
                        self.shared.metrics.record_message(
                            self.direction,
                            Outcome::Passed,
                            self.method,
                            self.model.get().map(String::as_str),
                            len,
                            len,
                            started.elapsed(),
                        );
                    }
                    Message::Record { buf, charge, .. } => {
                        self.record(buf.freeze(), charge.unwrap_or_default())?;
                    }
                    Message::Idle => {}
                }
            }
        }
        Ok(None)
    }

    /// Charges the record being gathered, from its first bytes (all of them, for a
    /// segment): `Ok(false)` while waiting for the budget. A record between containers
    /// first takes a hold for its bytes, since it is gathered after it is charged.
    fn charge_record(&mut self, cx: &mut Context<'_>) -> Result<bool, Status> {
        let Message::Record {
            buf,
            len,
            whole,
            hold,
            ..
        } = &mut *self.message
        else {
            return Ok(true);
        };
        let (need, len) = (record_need(buf, *len, self.shared), *len);
        if *whole && hold.is_none() {
            match self.account.poll_hold(cx, len) {
                Poll::Pending => return Ok(false),
                Poll::Ready(Ok(taken)) => *hold = Some(taken),
                Poll::Ready(Err(err)) => return Err(budget_status(err)),
            }
        }
        if !self.reserve(cx, need)? {
            return Ok(false);
        }
        let taken = self.account.take(need);
        if let Message::Record { buf, charge, .. } = self.message {
            buf.reserve(len.saturating_sub(buf.len()));
            *charge = Some(taken);
        }
        Ok(true)
    }

    /// Brings the credit to `total` bytes: `Ok(false)` while waiting for the budget.
    fn reserve(&mut self, cx: &mut Context<'_>, total: usize) -> Result<bool, Status> {
        match self.account.poll_reserve(cx, total) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(err)) => Err(budget_status(err)),
        }
    }

    /// One verified record: its restored bytes go to the app in order, with `charge`
    /// (the record and what it restores) until they are sent.
    fn record(&mut self, record: Bytes, charge: Charge) -> Result<(), Status> {
        let wire_len = record.len() + frame::PREFIX_LEN;
        let max = self.shared.max_message_bytes;
        let pushed = self
            .decoder
            .push(record)
            .map_err(|err| Status::from(&crate::Error::from(err)))?;
        match pushed {
            Record::Start { restored_len } => {
                let len = usize::try_from(restored_len)
                    .ok()
                    .filter(|&len| len <= max)
                    .ok_or_else(|| too_large(restored_len, max))?;
                self.pipeline
                    .push_charged(Bytes::copy_from_slice(&prefix(false, len)?), charge);
                self.start_sniff(len);
                *self.restoring = Some(Restoring {
                    len,
                    wire_len: 0,
                    started: Instant::now(),
                    span: trace::message_span(self.span, Work::Decode, self.direction),
                    codec: None,
                });
            }
            Record::Plain(bytes) => {
                self.sniff(&bytes);
                self.pipeline.push_charged(bytes, charge);
            }
            Record::Blosc(job) => {
                // Tensor data: the model's fields, if any, came before.
                *self.sniff = None;
                if let Some(restoring) = self.restoring.as_mut()
                    && restoring.codec.is_none()
                {
                    restoring.codec = job.compressor();
                }
                // The time it takes is reported to the sender with the response.
                let timing = Arc::clone(self.timing);
                self.pipeline.push_job(
                    move || {
                        let began = Instant::now();
                        let restored = job.run();
                        timing.lock().unwrap_or_else(|e| e.into_inner()).restored +=
                            began.elapsed();
                        restored.map_err(|err| Status::from(&crate::Error::from(err)))
                    },
                    None,
                    charge,
                );
            }
            Record::Whole(job) => {
                let len = job.restored_len();
                let limit = max.min(MAX_V1_RECORD);
                if len > limit {
                    return Err(too_large(len as u64, limit));
                }
                self.pipeline.push_job(
                    move || {
                        job.run()
                            .map_err(|err| Status::from(&crate::Error::from(err)))
                    },
                    Some(false),
                    charge,
                );
                self.shared.metrics.record_message(
                    self.direction,
                    Outcome::Decoded,
                    self.method,
                    self.model.get().map(String::as_str),
                    len,
                    wire_len,
                    std::time::Duration::ZERO,
                );
            }
        }
        if let Some(restoring) = self.restoring.as_mut() {
            restoring.wire_len += wire_len;
            if !self.decoder.is_open() {
                let done = self.restoring.take().expect("checked above");
                self.shared.metrics.record_message(
                    self.direction,
                    Outcome::Decoded,
                    self.method,
                    self.model.get().map(String::as_str),
                    done.len,
                    done.wire_len,
                    done.started.elapsed(),
                );
                // A traced container's span ends once its last restored bytes are sent.
                if !done.span.is_none() {
                    self.pipeline.push(
                        Out::End(MessageSummary {
                            len: done.len,
                            encoded: true,
                            started: done.started,
                            options: None,
                        }),
                        Charge::none(),
                    )?;
                    self.message_spans
                        .push_back((done.span, done.wire_len, done.codec));
                }
            }
        }
        Ok(())
    }
}

impl Reader<'_> {
    /// Starts looking for the model in a request message of `len` bytes, unless it is
    /// known already.
    fn start_sniff(&mut self, len: usize) {
        *self.sniff = None;
        if self.direction != Direction::Request || self.model.get().is_some() {
            return;
        }
        if let Some(walk) = self
            .shared
            .codec
            .locator()
            .stream(self.method, Direction::Request, len)
        {
            *self.sniff = Some(ModelSniff { walk, fed: 0 });
        }
    }

    /// Feeds restored request bytes to the model sniff.
    fn sniff(&mut self, bytes: &[u8]) {
        let Some(sniff) = self.sniff.as_mut() else {
            return;
        };
        let take = bytes.len().min(MODEL_SNIFF_BYTES - sniff.fed);
        let mut spans = Vec::new();
        sniff.walk.feed(&bytes[..take], &mut spans);
        sniff.fed += take;
        if let Some(model) = sniff.walk.model() {
            let _ = self.model.set(model_key(model));
            *self.sniff = None;
        } else if sniff.fed >= MODEL_SNIFF_BYTES {
            *self.sniff = None;
        }
    }
}

/// Logs a link sample at debug level, and a new estimate at info level when it moved by
/// more than a quarter (a changed link, not noise).
fn log_link(shared: &Shared, goodput: link::Goodput, before: Option<f64>, after: Option<f64>) {
    let mbps = |r: f64| r * 8e-6;
    tracing::debug!(
        peer = %shared.peer_name,
        bytes = goodput.bytes,
        duration_ms = goodput.secs * 1e3,
        link_bound = goodput.link_bound,
        estimate_mbps = after.map(mbps),
        "link sample"
    );
    let moved = match (before, after) {
        (None, Some(_)) => true,
        (Some(b), Some(a)) => (a / b - 1.0).abs() > 0.25,
        _ => false,
    };
    if let (true, Some(rate)) = (moved, after) {
        tracing::info!(
            peer = %shared.peer_name,
            link_mbps = (mbps(rate) * 10.0).round() / 10.0,
            previous_mbps = before.map(|b| (mbps(b) * 10.0).round() / 10.0),
            "measured the link to the peer"
        );
    }
}

fn too_large(len: u64, max: usize) -> Status {
    Status::new(
        Code::ResourceExhausted,
        format!("decoded message of {len} bytes exceeds the limit of {max} bytes"),
    )
}
