//! KServe v2 for the streaming walk: the frames of `ModelInferRequest`,
//! `ModelInferResponse` and `ModelStreamInferResponse`, with the raw-entry rule of the
//! whole-message locator (`super::super::kserve`): raw entry k belongs to the k-th input
//! with neither typed `contents` nor a `shared_memory_region` parameter (request), or to
//! the k-th output (response). A tensor is known once its message ends, so its raw entry
//! is located only if it comes later, as it does in every serializer's field order.

use std::collections::VecDeque;

use super::super::kserve::{
    REQUEST_RAW, RESPONSE_RAW, SHARED_MEMORY_REGION, STREAM_RESPONSE, TENSOR_CONTENTS,
    TENSOR_DATATYPE, TENSOR_NAME, TENSOR_PARAMETERS, TENSORS, contents_field,
};
use super::TensorStart;
use super::plan::{LenAction, ModelDraft, Plan, TagAction, WireType, text};
use crate::DType;

// `ModelInferRequest` / `ModelInferResponse`; the other field numbers are the
// whole-message locator's.
const MODEL_NAME: u32 = 1;
const MODEL_VERSION: u32 = 2;

/// Bytes of tensor metadata a message may hold while the tensors wait for their raw
/// entries; the tensors past it keep their raw entries plain.
const PENDING_BUDGET: usize = 1 << 20;

/// One message type of KServe v2.
#[derive(Debug)]
pub(super) enum Frame {
    /// `ModelStreamInferResponse`.
    StreamResponse,
    /// `ModelInferRequest` or `ModelInferResponse`.
    Message(InferMessage),
    /// `InferInputTensor` or `InferOutputTensor`.
    Tensor(Tensor),
    /// One entry of a tensor's `parameters` map; `shared_memory` when its key says so.
    Parameter { shared_memory: bool },
    /// `InferTensorContents` of the tensor called `name`, of declared type `dtype`.
    Contents { name: String, dtype: Option<DType> },
}

impl Frame {
    pub(super) fn request() -> Frame {
        Frame::Message(InferMessage::new(true))
    }

    pub(super) fn response() -> Frame {
        Frame::Message(InferMessage::new(false))
    }

    pub(super) fn stream_response() -> Frame {
        Frame::StreamResponse
    }
}

/// A `ModelInferRequest` / `ModelInferResponse` being walked.
#[derive(Debug)]
pub(super) struct InferMessage {
    is_request: bool,
    /// Tensors that take a raw entry, seen so far.
    takers: usize,
    /// Raw entries seen so far.
    raw_entries: usize,
    /// Tensors waiting for their raw entry: (taker index, tensor).
    pending: VecDeque<(usize, RawTarget)>,
    pending_bytes: usize,
}

/// What a raw entry needs of its tensor.
#[derive(Debug)]
struct RawTarget {
    name: String,
    dtype: DType,
}

impl InferMessage {
    fn new(is_request: bool) -> Self {
        InferMessage {
            is_request,
            takers: 0,
            raw_entries: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
        }
    }

    fn raw_field(&self) -> u32 {
        if self.is_request {
            REQUEST_RAW
        } else {
            RESPONSE_RAW
        }
    }

    /// A tensor ended.
    fn tensor_done(&mut self, tensor: Tensor) {
        // A response's raw entries are matched to every output in order.
        let takes_raw = !self.is_request || !(tensor.has_contents || tensor.shared_memory);
        if !takes_raw {
            return;
        }
        let index = self.takers;
        self.takers += 1;
        let (Some(name), Some(dtype)) = (tensor.name, tensor.dtype) else {
            return;
        };
        let cost = name.len() + size_of::<(usize, RawTarget)>();
        // A tensor whose raw entry already went by (fields out of order) gets nothing.
        if index < self.raw_entries || self.pending_bytes + cost > PENDING_BUDGET {
            return;
        }
        self.pending_bytes += cost;
        self.pending.push_back((index, RawTarget { name, dtype }));
    }

    /// The tensor of the next raw entry, if known. Pending indices only grow and are
    /// never below the count of raw entries, so the next one can only be at the front.
    fn next_raw_target(&mut self) -> Option<RawTarget> {
        let index = self.raw_entries;
        self.raw_entries += 1;
        if self.pending.front().is_none_or(|(i, _)| *i != index) {
            return None;
        }
        let (_, target) = self.pending.pop_front()?;
        self.pending_bytes -= target.name.len() + size_of::<(usize, RawTarget)>();
        Some(target)
    }
}

/// An `InferInputTensor` / `InferOutputTensor` being walked.
#[derive(Debug, Default)]
pub(super) struct Tensor {
    /// `None` when the name was too long to capture: its payloads stay plain.
    name: Option<String>,
    dtype: Option<DType>,
    has_contents: bool,
    shared_memory: bool,
}

impl Plan for Frame {
    fn on_tag(&mut self, number: u32, wire_type: WireType, model: &mut ModelDraft) -> TagAction {
        let is_len = wire_type == WireType::Len;
        match self {
            // The whole-message locator parses these fields as messages.
            Frame::StreamResponse if number == STREAM_RESPONSE && !is_len => TagAction::Malformed,
            Frame::Message(_) if number == TENSORS && !is_len => TagAction::Malformed,
            Frame::Message(_) => {
                if number > MODEL_VERSION {
                    model.settle();
                }
                TagAction::Pass
            }
            Frame::Parameter { shared_memory } if number == 1 && !is_len => {
                // The last key counts, and this one is not a string.
                *shared_memory = false;
                TagAction::Pass
            }
            _ => TagAction::Pass,
        }
    }

    fn on_len(&mut self, number: u32, len: usize, model: &mut ModelDraft) -> LenAction<Frame> {
        match self {
            Frame::StreamResponse if number == STREAM_RESPONSE => LenAction::Descend {
                frame: Frame::response(),
                fatal: true,
            },
            Frame::StreamResponse => LenAction::Skip,
            Frame::Message(_) if number == MODEL_NAME || number == MODEL_VERSION => {
                if model.open() {
                    LenAction::Capture
                } else {
                    LenAction::Skip
                }
            }
            Frame::Message(_) if number == TENSORS => LenAction::Descend {
                frame: Frame::Tensor(Tensor {
                    name: Some(String::new()),
                    ..Tensor::default()
                }),
                fatal: true,
            },
            Frame::Message(message) if number == message.raw_field() => {
                match message.next_raw_target() {
                    Some(target) if len > 0 => LenAction::Payload(TensorStart {
                        len,
                        elem_size: target.dtype.elem_size(),
                        name: target.name,
                        dtype: target.dtype,
                    }),
                    _ => LenAction::Skip,
                }
            }
            Frame::Message(_) => LenAction::Skip,
            Frame::Tensor(_) if number == TENSOR_NAME || number == TENSOR_DATATYPE => {
                LenAction::Capture
            }
            Frame::Tensor(_) if number == TENSOR_PARAMETERS => LenAction::Descend {
                frame: Frame::Parameter {
                    shared_memory: false,
                },
                fatal: true,
            },
            Frame::Tensor(tensor) if number == TENSOR_CONTENTS => {
                tensor.has_contents = true;
                match &tensor.name {
                    Some(name) => LenAction::Descend {
                        frame: Frame::Contents {
                            name: name.clone(),
                            dtype: tensor.dtype,
                        },
                        fatal: true,
                    },
                    None => LenAction::Skip,
                }
            }
            Frame::Tensor(_) => LenAction::Skip,
            Frame::Parameter { shared_memory } if number == 1 => {
                // Only a key of the right length is worth reading.
                *shared_memory = false;
                if len == SHARED_MEMORY_REGION.len() {
                    LenAction::Capture
                } else {
                    LenAction::Skip
                }
            }
            Frame::Parameter { .. } => LenAction::Skip,
            Frame::Contents { name, dtype } => match contents_field(number) {
                Some((field_dtype, elem_size)) if len > 0 => LenAction::Payload(TensorStart {
                    len,
                    elem_size,
                    name: name.clone(),
                    dtype: dtype.unwrap_or(field_dtype),
                }),
                _ => LenAction::Skip,
            },
        }
    }

    fn on_capture(&mut self, number: u32, bytes: Option<&[u8]>, model: &mut ModelDraft) {
        match self {
            Frame::Message(_) => {
                let value = bytes.map(text).unwrap_or_default();
                model.edit(|id| match number {
                    MODEL_NAME => id.name = value,
                    _ => id.version = value,
                });
            }
            Frame::Tensor(tensor) if number == TENSOR_NAME => {
                tensor.name = bytes.map(text);
            }
            Frame::Tensor(tensor) => {
                tensor.dtype = bytes
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(DType::from_kserve);
            }
            Frame::Parameter { shared_memory } => {
                *shared_memory = bytes == Some(SHARED_MEMORY_REGION);
            }
            _ => {}
        }
    }

    fn end(self, parent: Option<&mut Frame>, model: &mut ModelDraft) {
        match (self, parent) {
            (Frame::Message(_), _) => model.settle(),
            (Frame::Tensor(tensor), Some(Frame::Message(message))) => {
                message.tensor_done(tensor);
            }
            (Frame::Parameter { shared_memory }, Some(Frame::Tensor(tensor))) => {
                tensor.shared_memory |= shared_memory;
            }
            _ => {}
        }
    }
}
