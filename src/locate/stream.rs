//! A streaming walk of the protobuf wire format: classifies each byte of a message as it
//! arrives, in chunks of any size split at any point, without holding the message.
//!
//! [`Locator::stream`] gives a [`StreamWalk`] for one message. Each [`StreamWalk::feed`]
//! appends [`Span`]s that cover exactly the bytes fed: [`Span::Plain`] bytes stay as they
//! are, [`Span::Tensor`] bytes belong to a tensor payload, and the first span of each
//! payload carries a [`TensorStart`] with the whole payload's length and element type.
//!
//! The walk is a pushdown automaton: a stack of the length-delimited sub-messages it is
//! inside ([`plan::Plan`] frames, one kind per message type of the protocol) and a
//! [`State`] saying where in a field the next byte is (tag, varint, length prefix, or
//! value). The protocol's frames decide per field whether to pass it as plain bytes,
//! capture it (small metadata, at most [`MAX_CAPTURE`] bytes), descend into it, or
//! report it as a tensor payload. Memory is bounded by the captures, the stack depth
//! ([`wire::MAX_DEPTH`]) and a budget for the KServe tensors that wait for their raw
//! entry; it never depends on the size of the message.
//!
//! Metadata must arrive before the payload it describes, as every real serializer writes
//! fields in field-number order (KServe `inputs` before `raw_input_contents`, a tensor's
//! `datatype` before its `contents`, TF's `dtype` before `tensor_content`). A message in
//! another order only loses compression: a payload whose metadata comes later is plain.
//! A malformed message (where [`Locator::locate`] would find nothing) is plain from the
//! point where the walk sees the problem; spans before it stay as reported, which is
//! safe because the container restores bytes exactly whatever the classification.
//!
//! Tagged rules are not streamed: [`Locator::stream`] is `None` for a method a rule names.

mod kserve;
mod plan;
mod tfserving;

use super::wire::{MAX_DEPTH, MAX_FIELD_NUMBER};
use super::{
    Direction, KSERVE_MODEL_INFER, KSERVE_MODEL_STREAM_INFER, Locator, TF_SERVING_PREDICT,
};
use crate::DType;
use plan::{LenAction, ModelDraft, Plan, TagAction, WireType};

/// Largest field the walk captures (names, datatypes, model fields); a larger one is
/// passed as plain and its meaning is not understood.
pub const MAX_CAPTURE: usize = 64 * 1024;

/// How one run of a message's bytes is to be treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// Bytes that stay as they are.
    Plain(usize),
    /// `len` bytes of a tensor payload; `start` is `Some` on the first span of each
    /// tensor, and the spans of one tensor follow each other without a gap.
    Tensor {
        /// Bytes of the payload in this span.
        len: usize,
        /// What the payload is, on its first span.
        start: Option<TensorStart>,
    },
}

impl Span {
    /// Number of message bytes the span covers.
    pub fn len(&self) -> usize {
        match self {
            Span::Plain(len) | Span::Tensor { len, .. } => *len,
        }
    }

    /// Whether the span covers no bytes (never the case for spans a walk appends).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor payload that begins: what [`super::TensorRange`] says of it, without the
/// offset (the caller counts bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorStart {
    /// Bytes of the whole payload; never 0.
    pub len: usize,
    /// Width of one stored value, the Blosc typesize (see the [`super`] module docs).
    pub elem_size: usize,
    /// Tensor name from the message, "" when the protocol gives none.
    pub name: String,
    /// Element type of the tensor.
    pub dtype: DType,
}

/// The model a message names. Fields the message does not carry are "".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ModelId {
    /// KServe `model_name`, TF Serving `model_spec.name`.
    pub name: String,
    /// KServe `model_version`; TF Serving `model_spec.version` in decimal, or its
    /// `version_label`.
    pub version: String,
    /// TF Serving `model_spec.signature_name`; "" for KServe.
    pub signature: String,
}

impl Locator {
    /// A streaming walk over one message of `len` bytes of `method` going in `direction`;
    /// `None` when a tagged rule names the method (rules need the whole message) or no
    /// built-in protocol knows it.
    pub fn stream(&self, method: &str, direction: Direction, len: usize) -> Option<StreamWalk> {
        if self.rules.iter().any(|r| r.applies_to(method, direction)) {
            return None;
        }
        builtin_walk(method, direction, len)
    }

    /// The model a whole message names, as the streaming walk finds it: `None` when no
    /// built-in protocol knows the method, or the message is malformed before the walk is
    /// past its model fields. Tagged rules do not apply here: they name no model.
    pub fn model(&self, method: &str, direction: Direction, msg: &[u8]) -> Option<ModelId> {
        let mut walk = builtin_walk(method, direction, msg.len())?;
        walk.skim(msg);
        walk.model().cloned()
    }
}

fn builtin_walk(method: &str, direction: Direction, len: usize) -> Option<StreamWalk> {
    let inner = match (method, direction) {
        (KSERVE_MODEL_INFER | KSERVE_MODEL_STREAM_INFER, Direction::Request) => {
            Inner::KServe(Walker::new(kserve::Frame::request(), len))
        }
        (KSERVE_MODEL_INFER, Direction::Response) => {
            Inner::KServe(Walker::new(kserve::Frame::response(), len))
        }
        (KSERVE_MODEL_STREAM_INFER, Direction::Response) => {
            Inner::KServe(Walker::new(kserve::Frame::stream_response(), len))
        }
        (TF_SERVING_PREDICT, _) => {
            Inner::TfServing(Walker::new(tfserving::Frame::predict(direction), len))
        }
        _ => return None,
    };
    Some(StreamWalk { inner })
}

/// A streaming walk over one message; see the [module docs](self).
#[derive(Debug)]
pub struct StreamWalk {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    KServe(Walker<kserve::Frame>),
    TfServing(Walker<tfserving::Frame>),
}

impl StreamWalk {
    /// Classifies the next bytes of the message, in order: appends spans (none empty)
    /// that cover exactly `bytes.len()` bytes. Bytes past the message's length are plain.
    pub fn feed(&mut self, bytes: &[u8], spans: &mut Vec<Span>) {
        let mut sink = Sink::new(spans);
        match &mut self.inner {
            Inner::KServe(w) => w.feed(bytes, &mut sink),
            Inner::TfServing(w) => w.feed(bytes, &mut sink),
        }
    }

    /// The model the message names, once the walk is past the fields that name it (for
    /// KServe, the first field after `model_version`; for TF Serving, the end of
    /// `model_spec`; at the latest, the end of the message).
    pub fn model(&self) -> Option<&ModelId> {
        self.walker_model().settled()
    }

    /// Bytes fed so far.
    pub fn position(&self) -> usize {
        match &self.inner {
            Inner::KServe(w) => w.pos,
            Inner::TfServing(w) => w.pos,
        }
    }

    /// Whether the walk found the message malformed: every byte from that point on was
    /// reported plain.
    pub fn is_malformed(&self) -> bool {
        match &self.inner {
            Inner::KServe(w) => matches!(w.state, State::Dead),
            Inner::TfServing(w) => matches!(w.state, State::Dead),
        }
    }

    /// Whether the walk has seen the whole message (`len` bytes), well-formed or not.
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::KServe(w) => w.is_done(),
            Inner::TfServing(w) => w.is_done(),
        }
    }

    fn walker_model(&self) -> &ModelDraft {
        match &self.inner {
            Inner::KServe(w) => &w.model,
            Inner::TfServing(w) => &w.model,
        }
    }

    /// Walks the whole of `msg` for its metadata only: the spans are counted, not kept.
    fn skim(&mut self, msg: &[u8]) {
        let mut spans = Vec::new();
        for chunk in msg.chunks(MAX_CAPTURE) {
            self.feed(chunk, &mut spans);
            spans.clear();
        }
    }
}

/// Appends spans for one `feed`, merging neighbouring plain runs of that feed only (the
/// caller's earlier spans are never touched).
struct Sink<'a> {
    spans: &'a mut Vec<Span>,
    first: usize,
}

impl<'a> Sink<'a> {
    fn new(spans: &'a mut Vec<Span>) -> Self {
        let first = spans.len();
        Sink { spans, first }
    }

    fn plain(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.spans.len() > self.first
            && let Some(Span::Plain(len)) = self.spans.last_mut()
        {
            *len += n;
            return;
        }
        self.spans.push(Span::Plain(n));
    }

    fn tensor(&mut self, n: usize, start: Option<TensorStart>) {
        self.spans.push(Span::Tensor { len: n, start });
    }
}

/// One length-delimited message the walk is inside.
#[derive(Debug)]
struct Level<F> {
    /// Absolute offset where the message ends.
    end: usize,
    /// Whether a malformed byte here makes the whole rest plain (a message the
    /// whole-message locator parses), or only the rest of this message (one it skips).
    fatal: bool,
    /// Set when this message turned out malformed: it ends without telling its parent.
    failed: bool,
    frame: F,
}

/// Where in the wire format the next byte is.
#[derive(Debug)]
enum State {
    /// At or inside a tag; `count` bytes of it read.
    Tag { value: u64, count: u8 },
    /// Inside a varint value; `deliver` when the frame wants the value.
    Varint {
        number: u32,
        value: u64,
        count: u8,
        deliver: bool,
    },
    /// Inside the length prefix of a length-delimited field.
    Length { number: u32, value: u64, count: u8 },
    /// Inside a value passed as plain bytes.
    Skip { remaining: usize },
    /// Inside a value the frame wants to read.
    Capture { number: u32, remaining: usize },
    /// Inside a tensor payload; `start` until its first span is out.
    Payload {
        remaining: usize,
        start: Option<TensorStart>,
    },
    /// The message ended; anything more is plain.
    Done,
    /// The message is malformed; the rest is plain.
    Dead,
}

/// Adds one byte to a varint being read: `Ok(Some(value))` when complete, `Err` when it
/// overflows 64 bits (the same rule as [`super::wire::decode_varint`]).
fn varint_byte(value: &mut u64, count: &mut u8, byte: u8) -> Result<Option<u64>, ()> {
    let bits = u64::from(byte & 0x7f);
    if *count == 9 && bits > 1 {
        return Err(());
    }
    *value |= bits << (7 * u32::from(*count));
    *count += 1;
    if byte & 0x80 == 0 {
        Ok(Some(*value))
    } else if *count == 10 {
        Err(())
    } else {
        Ok(None)
    }
}

/// The protocol-independent engine, driven by a [`Plan`]'s frames.
#[derive(Debug)]
struct Walker<F> {
    /// Absolute offset of the next byte.
    pos: usize,
    /// Length of the whole message.
    len: usize,
    /// Innermost message last; the first is the whole message.
    stack: Vec<Level<F>>,
    state: State,
    /// Field numbers of the proto2 groups being skipped in the innermost message.
    groups: Vec<u32>,
    capture: Vec<u8>,
    model: ModelDraft,
}

impl<F: Plan> Walker<F> {
    fn new(root: F, len: usize) -> Self {
        let mut walker = Walker {
            pos: 0,
            len,
            stack: Vec::with_capacity(8),
            state: State::Tag { value: 0, count: 0 },
            groups: Vec::new(),
            capture: Vec::new(),
            model: ModelDraft::default(),
        };
        walker.stack.push(Level {
            end: len,
            fatal: true,
            failed: false,
            frame: root,
        });
        walker.field_done();
        walker
    }

    fn is_done(&self) -> bool {
        self.pos >= self.len
    }

    fn feed(&mut self, bytes: &[u8], sink: &mut Sink<'_>) {
        let mut i = 0;
        while i < bytes.len() {
            let available = bytes.len() - i;
            match &mut self.state {
                State::Done | State::Dead => {
                    sink.plain(available);
                    self.pos = self.pos.saturating_add(available);
                    return;
                }
                State::Skip { remaining } => {
                    let n = (*remaining).min(available);
                    *remaining -= n;
                    let finished = *remaining == 0;
                    sink.plain(n);
                    self.advance(n, &mut i);
                    if finished {
                        self.field_done();
                    }
                }
                State::Payload { remaining, start } => {
                    let n = (*remaining).min(available);
                    *remaining -= n;
                    let finished = *remaining == 0;
                    sink.tensor(n, start.take());
                    self.advance(n, &mut i);
                    if finished {
                        self.field_done();
                    }
                }
                State::Capture { number, remaining } => {
                    let n = (*remaining).min(available);
                    *remaining -= n;
                    let (number, finished) = (*number, *remaining == 0);
                    self.capture.extend_from_slice(&bytes[i..i + n]);
                    sink.plain(n);
                    self.advance(n, &mut i);
                    if finished {
                        self.captured(number);
                    }
                }
                State::Tag { .. } | State::Varint { .. } | State::Length { .. } => {
                    sink.plain(1);
                    let byte = bytes[i];
                    self.header_byte(byte);
                    i += 1;
                }
            }
        }
    }

    fn advance(&mut self, n: usize, i: &mut usize) {
        self.pos += n;
        *i += n;
    }

    fn top_end(&self) -> usize {
        self.stack.last().map_or(0, |level| level.end)
    }

    /// One byte of a tag, varint value or length prefix.
    fn header_byte(&mut self, byte: u8) {
        if self.pos >= self.top_end() {
            // A field runs past the end of the message holding it.
            self.truncated_header();
            if !matches!(self.state, State::Tag { .. }) {
                self.pos += 1;
                return;
            }
        }
        self.pos += 1;
        match &mut self.state {
            State::Tag { value, count } => match varint_byte(value, count, byte) {
                Ok(Some(tag)) => self.tag(tag),
                Ok(None) => {}
                Err(()) => self.malformed(),
            },
            State::Varint {
                number,
                value,
                count,
                deliver,
            } => match varint_byte(value, count, byte) {
                Ok(Some(v)) => {
                    if *deliver {
                        let number = *number;
                        if let Some(level) = self.stack.last_mut() {
                            level.frame.on_varint(number, v, &mut self.model);
                        }
                    }
                    self.field_done();
                }
                Ok(None) => {}
                Err(()) => self.malformed(),
            },
            State::Length {
                number,
                value,
                count,
            } => match varint_byte(value, count, byte) {
                Ok(Some(len)) => {
                    let number = *number;
                    self.length(number, len);
                }
                Ok(None) => {}
                Err(()) => self.malformed(),
            },
            _ => {}
        }
    }

    /// A complete tag.
    fn tag(&mut self, tag: u64) {
        let number = tag >> 3;
        if number == 0 || number > u64::from(MAX_FIELD_NUMBER) {
            return self.malformed();
        }
        // Both fit: number <= 2^29 - 1, and the wire type is 3 bits.
        let number = number as u32;
        let Some(wire_type) = WireType::from_bits((tag & 7) as u8) else {
            return self.malformed();
        };
        if !self.groups.is_empty() {
            return self.group_field(number, wire_type);
        }
        let depth = self.stack.len().saturating_sub(1);
        let Some(level) = self.stack.last_mut() else {
            return self.malformed();
        };
        let action = level.frame.on_tag(number, wire_type, &mut self.model);
        if action == TagAction::Malformed {
            return self.malformed();
        }
        match wire_type {
            WireType::Varint => {
                self.state = State::Varint {
                    number,
                    value: 0,
                    count: 0,
                    deliver: action == TagAction::Deliver,
                }
            }
            WireType::Fixed64 => self.skip(8),
            WireType::Fixed32 => self.skip(4),
            WireType::Len => {
                self.state = State::Length {
                    number,
                    value: 0,
                    count: 0,
                }
            }
            WireType::StartGroup => {
                if depth >= MAX_DEPTH as usize {
                    return self.malformed();
                }
                self.groups.push(number);
                self.state = State::Tag { value: 0, count: 0 };
            }
            WireType::EndGroup => self.malformed(),
        }
    }

    /// A field inside a proto2 group: skipped, nested groups counted.
    fn group_field(&mut self, number: u32, wire_type: WireType) {
        match wire_type {
            WireType::Varint => {
                self.state = State::Varint {
                    number,
                    value: 0,
                    count: 0,
                    deliver: false,
                }
            }
            WireType::Fixed64 => self.skip(8),
            WireType::Fixed32 => self.skip(4),
            WireType::Len => {
                self.state = State::Length {
                    number,
                    value: 0,
                    count: 0,
                }
            }
            WireType::StartGroup => {
                let depth = self.stack.len().saturating_sub(1);
                if self.groups.len() + depth >= MAX_DEPTH as usize {
                    return self.malformed();
                }
                self.groups.push(number);
                self.state = State::Tag { value: 0, count: 0 };
            }
            WireType::EndGroup => {
                if self.groups.last() != Some(&number) {
                    return self.malformed();
                }
                self.groups.pop();
                self.field_done();
            }
        }
    }

    /// Skips a fixed-width value, which must fit the message holding it.
    fn skip(&mut self, n: usize) {
        if n > self.top_end() - self.pos {
            return self.malformed();
        }
        self.state = State::Skip { remaining: n };
    }

    /// A complete length prefix: what to do with the value is the frame's decision.
    fn length(&mut self, number: u32, len: u64) {
        let room = self.top_end() - self.pos;
        let Some(len) = usize::try_from(len).ok().filter(|&len| len <= room) else {
            return self.malformed();
        };
        if !self.groups.is_empty() {
            self.state = State::Skip { remaining: len };
            return self.value_started(len);
        }
        let depth = self.stack.len();
        let Some(level) = self.stack.last_mut() else {
            return self.malformed();
        };
        match level.frame.on_len(number, len, &mut self.model) {
            LenAction::Skip => self.state = State::Skip { remaining: len },
            LenAction::Capture if len > MAX_CAPTURE => {
                level.frame.on_capture(number, None, &mut self.model);
                self.state = State::Skip { remaining: len };
            }
            LenAction::Capture => {
                self.capture.clear();
                self.capture.reserve(len);
                self.state = State::Capture {
                    number,
                    remaining: len,
                };
                if len == 0 {
                    return self.captured(number);
                }
            }
            LenAction::Descend { frame, fatal } => {
                if depth > MAX_DEPTH as usize {
                    return self.malformed();
                }
                self.stack.push(Level {
                    end: self.pos + len,
                    fatal,
                    failed: false,
                    frame,
                });
                return self.field_done();
            }
            LenAction::Payload(start) => {
                self.state = State::Payload {
                    remaining: len,
                    start: Some(start),
                }
            }
        }
        self.value_started(len);
    }

    /// An empty value is complete as soon as it starts.
    fn value_started(&mut self, len: usize) {
        if len == 0 {
            self.field_done();
        }
    }

    fn captured(&mut self, number: u32) {
        if let Some(level) = self.stack.last_mut() {
            level
                .frame
                .on_capture(number, Some(&self.capture), &mut self.model);
        }
        // Keep a large buffer only while it is in use.
        if self.capture.capacity() > 4096 {
            self.capture = Vec::new();
        } else {
            self.capture.clear();
        }
        self.field_done();
    }

    /// A field is complete: the next byte starts a tag, unless messages end here.
    fn field_done(&mut self) {
        self.state = State::Tag { value: 0, count: 0 };
        while let Some(level) = self.stack.last_mut() {
            if self.pos < level.end {
                return;
            }
            if !self.groups.is_empty() {
                // A group still open at the end of its message.
                self.groups.clear();
                if level.fatal {
                    self.state = State::Dead;
                    return;
                }
                level.failed = true;
            }
            let Some(level) = self.stack.pop() else { break };
            let parent = self.stack.last_mut().map(|p| &mut p.frame);
            if !level.failed {
                level.frame.end(parent, &mut self.model);
            }
        }
        self.model.settle();
        self.state = State::Done;
    }

    /// The innermost message is malformed at the byte just read: the rest of the whole
    /// message is plain if it is one the whole-message locator parses, else the rest of
    /// that message only.
    fn malformed(&mut self) {
        self.groups.clear();
        let Some(level) = self.stack.last_mut() else {
            self.state = State::Dead;
            return;
        };
        if level.fatal {
            self.state = State::Dead;
            return;
        }
        level.failed = true;
        let remaining = level.end - self.pos;
        self.state = State::Skip { remaining };
        if remaining == 0 {
            self.field_done();
        }
    }

    /// The innermost message ends inside a tag, varint or length prefix: the next byte
    /// belongs to its parent, and starts a tag there if the walk goes on.
    fn truncated_header(&mut self) {
        self.groups.clear();
        match self.stack.last_mut() {
            Some(level) if !level.fatal => {
                level.failed = true;
                self.field_done();
            }
            _ => self.state = State::Dead,
        }
    }
}

#[cfg(test)]
mod tests;
