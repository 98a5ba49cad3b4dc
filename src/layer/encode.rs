//! The encoding body: reads the app's gRPC messages as they arrive and sends them as
//! bloscar records (or identity) chunk by chunk, compressing on the blocking pool.
//!
//! Per message, the 5-byte prefix gives the length; a streaming walk classifies the
//! bytes as they come ([`StreamEncoder`]). Messages the app compressed itself (gzip,
//! deflate, zstd), and methods whose locator needs the whole message, are gathered whole
//! first, within the message size limit. Up to [`MAX_JOBS_AHEAD`](super::pipeline::MAX_JOBS_AHEAD) chunks compress while
//! earlier ones are on the link; beyond that the body stops reading, so flow control,
//! not buffering, holds the app back.
//!
//! What the body holds is charged to the memory budget ([`Account`]) before it is taken
//! in: a message streaming through as it is, per piece; the encoder's bytes at twice
//! their length (the chunk it gathers and its compressed form); a message gathered whole,
//! at twice its length (the message and what it becomes), or for one the app compressed,
//! at its compressed length and then twice its plain length. While the budget has no
//! room the body stops reading.
//!
//! A partly gathered chunk only more input can release: the body never waits (for the
//! budget, or for input while other streams wait for the budget) keeping one unless the
//! budget has room for such bytes ([`Account::keep_while_waiting`]); otherwise the encoder
//! sends it as it is first ([`StreamEncoder::flush`]), a shorter Blosc segment. So input
//! stuck behind other streams' frames on the same HTTP/2 connection never holds permits
//! those streams wait for.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use super::Shared;
use super::clock::Clock;
use super::intake::{Intake, budget_status};
use super::link::{self, SharedTiming};
use super::pipeline::{Output, Pipeline};
use super::whole::Whole;
use crate::budget::{Account, Charge, Hold};
use crate::error::BoxError;
use crate::grpc::encoding::Encoding;
use crate::grpc::frame::{self, FrameDecoder, FrameEvent};
use crate::grpc::{Code, ErrorSlot, Status};
use crate::locate::Direction;
use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::Outcome;
use crate::stream_encoder::{EncoderContext, MessageSummary, Out, StreamEncoder};
use crate::trace::{self, Work};

/// What the body does with the message being read.
enum Message {
    /// Between messages.
    Idle,
    /// Too short to hold a tensor worth compressing: streams through as it is.
    Passing {
        len: usize,
        started: std::time::Instant,
    },
    /// Streaming through the encoder.
    Streaming(Box<StreamEncoder>),
    /// Gathered whole first: compressed by the app, or for a locator that needs it all.
    Gathering {
        compressed: bool,
        buf: BytesMut,
        charge: Charge,
        hold: Hold,
    },
}

pin_project! {
    /// A gRPC body whose messages leave as bloscar records or identity.
    pub struct EncodeBody<B> {
        #[pin]
        inner: B,
        shared: Arc<Shared>,
        context: EncoderContext,
        direction: Direction,
        source: Encoding,
        slot: ErrorSlot,
        frames: FrameDecoder,
        message: Message,
        pipeline: Pipeline,
        scratch: Vec<Out>,
        clock: Clock,
        timing: SharedTiming,
        report: bool,
        account: Account,
        intake: Intake,
        hold: Option<Hold>,
        // The call's span, parent of the messages' spans.
        span: tracing::Span,
        // The spans of the messages taken in and not yet sent, in order.
        message_spans: VecDeque<tracing::Span>,
    }
}

impl<B> EncodeBody<B> {
    /// Encodes the messages of `inner`, a stream of `context.method` going in
    /// `direction`, sent by the app in `source`. How it was sent goes to `timing`; with
    /// `report`, the trailers also carry the call's link report to the peer. What it
    /// holds is charged to `account`. Each message it encodes gets a span under `span`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        inner: B,
        shared: Arc<Shared>,
        context: EncoderContext,
        direction: Direction,
        source: Encoding,
        slot: ErrorSlot,
        timing: SharedTiming,
        report: bool,
        account: Account,
        span: tracing::Span,
    ) -> Self {
        let max = shared.max_message_bytes;
        EncodeBody {
            inner,
            pipeline: Pipeline::new(Arc::clone(&shared.jobs)),
            shared,
            context,
            direction,
            source,
            slot,
            frames: FrameDecoder::new(max),
            message: Message::Idle,
            scratch: Vec::new(),
            clock: Clock::default(),
            timing,
            report,
            account,
            intake: Intake::default(),
            hold: None,
            span,
            message_spans: VecDeque::new(),
        }
    }
}

impl<B> Body for EncodeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.as_mut().poll_encoded(cx);
        let this = self.project();
        match &polled {
            Poll::Pending => this.clock.idle(),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.clock.moved(data.len());
                }
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<B> EncodeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            match ready!(this.pipeline.poll_output(cx)) {
                Output::Data(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Output::Sent(sent) => {
                    let outcome = if sent.encoded {
                        Outcome::Encoded
                    } else {
                        Outcome::Passed
                    };
                    this.shared.metrics.record_message(
                        *this.direction,
                        outcome,
                        &this.context.method,
                        this.context.model.get().map(String::as_str),
                        sent.len,
                        sent.wire_len,
                        sent.started.elapsed(),
                    );
                    if let Some(span) = this.message_spans.pop_front() {
                        trace::finish_encode(&span, &sent);
                    }
                    continue;
                }
                Output::Failed(status) => {
                    return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                }
                Output::Finished(mut trailers) => {
                    let mut timing = this.timing.lock().unwrap_or_else(|e| e.into_inner());
                    timing.sent = Some(this.clock.clone());
                    if *this.report
                        && let Some(trailers) = trailers.as_mut()
                        && let Some(value) = link::report(&timing)
                    {
                        trailers.insert(link::LINK_TRAILER, value);
                    }
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
                Output::Done => return Poll::Ready(None),
                Output::NeedInput => {}
            }
            if !this.intake.is_empty() {
                let mut taker = Taker {
                    shared: this.shared,
                    context: this.context,
                    direction: *this.direction,
                    source: *this.source,
                    message: this.message,
                    scratch: this.scratch,
                    pipeline: this.pipeline,
                    account: this.account,
                    hold: this.hold,
                    span: this.span,
                    message_spans: this.message_spans,
                };
                match taker.take(cx, this.intake, this.frames) {
                    Ok(true) => continue,
                    // Waiting for the budget; what was queued meanwhile goes first.
                    Ok(false) if this.pipeline.has_new_output() => continue,
                    // Not reading holds the app back.
                    Ok(false) => return Poll::Pending,
                    Err(status) => {
                        return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                    }
                }
            }
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // Idle while keeping a partly gathered chunk: once other streams wait
                    // for the budget, it must be registered as kept, or sent on.
                    let Message::Streaming(encoder) = &mut *this.message else {
                        return Poll::Pending;
                    };
                    if encoder.held_len() == 0
                        || this.account.is_keeping()
                        || this.account.poll_pressure(cx).is_pending()
                        || this.account.keep_while_waiting(this.account.credit())
                    {
                        return Poll::Pending;
                    }
                    let before = encoder.held_len();
                    encoder.flush(this.scratch);
                    let held = encoder.held_len();
                    if let Err(status) = push_scratch(this.scratch, this.account, this.pipeline) {
                        return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                    }
                    this.account.shed_to(2 * held);
                    // What was sent goes out first; a part of an element alone stays.
                    if held < before {
                        continue;
                    }
                    return Poll::Pending;
                }
            };
            // Input came: nothing is kept waiting any more.
            this.account.stop_keeping();
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.intake.fill(data),
                    Err(frame) => {
                        if !this.frames.at_boundary() {
                            let status = frame::cut_mid_message();
                            return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                        }
                        this.pipeline.end_input(frame.into_trailers().ok());
                    }
                },
                Some(Err(err)) => {
                    this.pipeline.stop();
                    return Poll::Ready(Some(Err(err.into())));
                }
                None => {
                    if !this.frames.at_boundary() {
                        let status = frame::cut_mid_message();
                        return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                    }
                    this.pipeline.end_input(None);
                }
            }
        }
    }
}

/// The parts of the body that take the app's bytes in.
struct Taker<'a> {
    shared: &'a Arc<Shared>,
    context: &'a EncoderContext,
    direction: Direction,
    source: Encoding,
    message: &'a mut Message,
    scratch: &'a mut Vec<Out>,
    pipeline: &'a mut Pipeline,
    account: &'a mut Account,
    /// The hold of a message about to be gathered whole, while its charge waits.
    hold: &'a mut Option<Hold>,
    span: &'a tracing::Span,
    message_spans: &'a mut VecDeque<tracing::Span>,
}

impl Taker<'_> {
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
                let message = start(self.shared, self.context, self.direction, compressed, len);
                // Too short to be worth compressing: no work to show.
                let traced = !matches!(message, Message::Passing { .. });
                match message {
                    Message::Passing { len, started } => {
                        self.pipeline
                            .push_bytes(Bytes::copy_from_slice(&frame::prefix(false, len)?));
                        *self.message = Message::Passing { len, started };
                    }
                    Message::Streaming(mut encoder) => {
                        if len == 0 {
                            encoder.feed(Bytes::new(), self.scratch);
                            push_scratch(self.scratch, self.account, self.pipeline)?;
                        }
                        *self.message = Message::Streaming(encoder);
                    }
                    Message::Gathering {
                        compressed,
                        mut buf,
                        ..
                    } => {
                        // Held whole: gathered after it is charged, so it takes a hold
                        // first; then the message and what it becomes (for a message the
                        // app compressed, reserved once its plain length is known).
                        if self.hold.is_none() {
                            match self.account.poll_hold(cx, len) {
                                Poll::Pending => {
                                    return Ok(Some(FrameEvent::Start { compressed, len }));
                                }
                                Poll::Ready(Ok(hold)) => *self.hold = Some(hold),
                                Poll::Ready(Err(err)) => return Err(budget_status(err)),
                            }
                        }
                        let need = if compressed { len } else { 2 * len };
                        if !self.reserve(cx, need)? {
                            return Ok(Some(FrameEvent::Start { compressed, len }));
                        }
                        buf.reserve(len);
                        *self.message = Message::Gathering {
                            compressed,
                            buf,
                            charge: self.account.take(need),
                            hold: self.hold.take().unwrap_or_default(),
                        };
                    }
                    Message::Idle => {}
                }
                // Taken in (not handed back to wait for the budget): its span is queued
                // until the pipeline says it was sent. An untraced call queues nothing.
                if !self.span.is_none() {
                    self.message_spans.push_back(if traced {
                        trace::message_span(self.span, Work::Encode, self.direction)
                    } else {
                        tracing::Span::none()
                    });
                }
            }
            FrameEvent::Data(bytes) => match self.message {
                Message::Passing { .. } => {
                    if !self.reserve(cx, bytes.len())? {
                        return Ok(Some(FrameEvent::Data(bytes)));
                    }
                    let charge = self.account.take(bytes.len());
                    self.pipeline.push_charged(bytes, charge);
                }
                Message::Streaming(_) => return self.feed(cx, bytes),
                Message::Gathering { buf, .. } => buf.extend_from_slice(&bytes),
                Message::Idle => {
                    return Err(Status::new(Code::Internal, "message bytes before a prefix"));
                }
            },
            FrameEvent::End => match std::mem::replace(self.message, Message::Idle) {
                Message::Passing { len, started } => {
                    self.pipeline.push(
                        Out::End(MessageSummary {
                            len,
                            encoded: false,
                            started,
                            options: None,
                        }),
                        Charge::none(),
                    )?;
                }
                Message::Gathering {
                    compressed,
                    buf,
                    charge,
                    hold,
                } => {
                    let whole = Whole {
                        codec: Arc::clone(&self.shared.codec),
                        context: self.context.clone(),
                        direction: self.direction,
                        source: self.source,
                        compressed,
                        max_message_bytes: self.shared.max_message_bytes,
                    };
                    let (jobs, account) = (self.pipeline.jobs(), self.account.sibling());
                    // Gathered: only a message the app compressed waits for more (its
                    // plain length's worth), and keeps its hold meanwhile.
                    let hold = if compressed { hold } else { Hold::default() };
                    self.pipeline.push_expand(whole.expand(
                        buf.freeze(),
                        charge,
                        hold,
                        jobs,
                        account,
                    ));
                }
                // The encoder ended the message with its last byte; it holds nothing.
                Message::Streaming(_) => self.account.shed_to(0),
                Message::Idle => {}
            },
        }
        Ok(None)
    }

    /// Feeds the streaming encoder, once the credit covers what it holds back and
    /// `bytes`, twice (see [`Out::held_len`]).
    fn feed(&mut self, cx: &mut Context<'_>, bytes: Bytes) -> Result<Option<FrameEvent>, Status> {
        let Message::Streaming(encoder) = &mut *self.message else {
            unreachable!("only called while streaming");
        };
        let mut held = encoder.held_len();
        if self.account.credit() < 2 * (held + bytes.len()) {
            let ready = self.account.is_waiting()
                || self
                    .account
                    .try_reserve(2 * (held + bytes.len()))
                    .map_err(budget_status)?;
            // About to wait: the encoder keeps what it holds back only if there is room
            // for such bytes; otherwise it sends them on first.
            if !ready
                && !self.account.is_keeping()
                && !self.account.keep_while_waiting(self.account.credit())
            {
                encoder.flush(self.scratch);
                held = encoder.held_len();
                push_scratch(self.scratch, self.account, self.pipeline)?;
                self.account.shed_to(2 * held);
            }
            if !self.reserve(cx, 2 * (held + bytes.len()))? {
                return Ok(Some(FrameEvent::Data(bytes)));
            }
            self.account.stop_keeping();
        }
        let Message::Streaming(encoder) = &mut *self.message else {
            unreachable!("only called while streaming");
        };
        encoder.feed(bytes, self.scratch);
        let held = encoder.held_len();
        push_scratch(self.scratch, self.account, self.pipeline)?;
        self.account.shed_to(2 * held);
        Ok(None)
    }

    /// Brings the credit to `total` bytes: `Ok(false)` while waiting for the budget.
    fn reserve(&mut self, cx: &mut Context<'_>, total: usize) -> Result<bool, Status> {
        match self.account.poll_reserve(cx, total) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(err)) => Err(budget_status(err)),
        }
    }
}

/// Queues the encoder's output, each piece with its charge out of the credit.
fn push_scratch(
    scratch: &mut Vec<Out>,
    account: &mut Account,
    pipeline: &mut Pipeline,
) -> Result<(), Status> {
    for out in scratch.drain(..) {
        let charge = account.take(out.held_len());
        pipeline.push(out, charge)?;
    }
    Ok(())
}

/// How a message of `len` bytes is read: streamed when a walk can follow it.
fn start(
    shared: &Shared,
    context: &EncoderContext,
    direction: Direction,
    compressed: bool,
    len: usize,
) -> Message {
    if !compressed && len < context.chooser.min_tensor_len() {
        return Message::Passing {
            len,
            started: std::time::Instant::now(),
        };
    }
    if !compressed
        && let Some(walk) = shared
            .codec
            .locator()
            .stream(&context.method, direction, len)
    {
        return Message::Streaming(Box::new(StreamEncoder::streaming(
            context.clone(),
            len,
            walk,
        )));
    }
    // Allocated once the budget has room for it.
    Message::Gathering {
        compressed,
        buf: BytesMut::new(),
        charge: Charge::none(),
        hold: Hold::default(),
    }
}

/// Ends the stream with `status`, left in `slot` for the other side of the call.
pub(super) fn fail(slot: &ErrorSlot, pipeline: &mut Pipeline, status: Status) -> BoxError {
    static STREAM_FAILED: LogSite = LogSite::new("layer_stream_failed");
    warn_limited!(STREAM_FAILED, code = status.code.label(), message = %status.message, "gRPC stream failed");
    slot.set(status.clone());
    pipeline.stop();
    Box::new(status)
}
