//! The encoding body: reads the app's gRPC messages as they arrive and sends them as
//! bloscar records (or identity) chunk by chunk, compressing on the blocking pool.
//!
//! Per message, the 5-byte prefix gives the length; a streaming walk classifies the
//! bytes as they come ([`StreamEncoder`]). Messages the app compressed itself (gzip,
//! deflate, zstd), and methods whose locator needs the whole message, are gathered whole
//! first, within the message size limit. Up to [`MAX_JOBS_AHEAD`](super::pipeline::MAX_JOBS_AHEAD) chunks compress while
//! earlier ones are on the link; beyond that the body stops reading, so flow control,
//! not buffering, holds the app back.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use super::Shared;
use super::clock::Clock;
use super::link::{self, SharedTiming};
use super::pipeline::{Output, Pipeline};
use crate::error::BoxError;
use crate::grpc::encoding::{self, Encoding};
use crate::grpc::frame::{self, FrameDecoder, FrameEvent};
use crate::grpc::{Code, ErrorSlot, Status};
use crate::locate::Direction;
use crate::log_limit::{LogSite, warn_limited};
use crate::metrics::Outcome;
use crate::stream_encoder::{EncoderContext, MessageSummary, Out, StreamEncoder};

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
    Gathering { compressed: bool, buf: BytesMut },
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
    }
}

impl<B> EncodeBody<B> {
    /// Encodes the messages of `inner`, a stream of `context.method` going in
    /// `direction`, sent by the app in `source`. How it was sent goes to `timing`; with
    /// `report`, the trailers also carry the call's link report to the peer.
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
                        sent.len,
                        sent.wire_len,
                        sent.started.elapsed(),
                    );
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
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        if let Err(status) = consume(
                            &mut data,
                            this.frames,
                            this.message,
                            this.shared,
                            this.context,
                            *this.direction,
                            *this.source,
                            this.scratch,
                            this.pipeline,
                        ) {
                            return Poll::Ready(Some(Err(fail(this.slot, this.pipeline, status))));
                        }
                    }
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

/// Runs one DATA frame of the app's stream through the message state.
#[allow(clippy::too_many_arguments)]
fn consume(
    data: &mut Bytes,
    frames: &mut FrameDecoder,
    message: &mut Message,
    shared: &Shared,
    context: &EncoderContext,
    direction: Direction,
    source: Encoding,
    scratch: &mut Vec<Out>,
    pipeline: &mut Pipeline,
) -> Result<(), Status> {
    while let Some(event) = frames.decode(data)? {
        match event {
            FrameEvent::Start { compressed, len } => {
                *message = start(shared, context, direction, compressed, len);
                if let Message::Passing { .. } = message {
                    pipeline.push_bytes(Bytes::copy_from_slice(&frame::prefix(false, len)?));
                }
                if let Message::Streaming(encoder) = message
                    && len == 0
                {
                    encoder.feed(Bytes::new(), scratch);
                }
            }
            FrameEvent::Data(bytes) => match message {
                Message::Passing { .. } => pipeline.push_bytes(bytes),
                Message::Streaming(encoder) => encoder.feed(bytes, scratch),
                Message::Gathering { buf, .. } => buf.extend_from_slice(&bytes),
                Message::Idle => {
                    return Err(Status::new(Code::Internal, "message bytes before a prefix"));
                }
            },
            FrameEvent::End => {
                let ended = std::mem::replace(message, Message::Idle);
                if let Message::Passing { len, started } = ended {
                    pipeline.push_all([Out::End(MessageSummary {
                        len,
                        encoded: false,
                        started,
                    })])?;
                } else if let Message::Gathering { compressed, buf } = ended {
                    pipeline.push_all(scratch.drain(..))?;
                    let whole = Whole {
                        codec: Arc::clone(&shared.codec),
                        context: context.clone(),
                        direction,
                        source,
                        compressed,
                        max_message_bytes: shared.max_message_bytes,
                    };
                    let data = buf.freeze();
                    pipeline.push_expand(move || whole.encode(data));
                }
                *message = Message::Idle;
            }
        }
        pipeline.push_all(scratch.drain(..))?;
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
    Message::Gathering {
        compressed,
        buf: BytesMut::with_capacity(len.min(1 << 20)),
    }
}

/// A message gathered whole, to encode on the blocking pool: decompressing the app's
/// encoding and locating tensors in a large message are CPU-bound too.
struct Whole {
    codec: Arc<crate::MessageCodec>,
    context: EncoderContext,
    direction: Direction,
    source: Encoding,
    compressed: bool,
    max_message_bytes: usize,
}

impl Whole {
    fn encode(self, data: Bytes) -> Result<Vec<Out>, Status> {
        let plain = if self.compressed {
            match self.source {
                Encoding::Gzip | Encoding::Deflate | Encoding::Zstd => Bytes::from(
                    encoding::decompress(self.source, &data, self.max_message_bytes)?,
                ),
                Encoding::Identity | Encoding::Bloscar => {
                    return Err(Status::new(
                        Code::Internal,
                        "compressed message without a grpc-encoding",
                    ));
                }
            }
        } else {
            data
        };
        let ranges = self
            .codec
            .locator()
            .locate(&self.context.method, self.direction, &plain);
        let mut encoder = StreamEncoder::whole(self.context, plain.len(), &ranges);
        drop(ranges);
        let mut out = Vec::new();
        encoder.feed(plain.clone(), &mut out);
        Ok(out)
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
