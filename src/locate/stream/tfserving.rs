//! TensorFlow Serving `Predict` for the streaming walk: the `map<string, TensorProto>` of
//! `PredictRequest.inputs` / `PredictResponse.outputs`, and `model_spec` for the model.
//! A map entry's key (field 1) precedes its value (field 2), and a `TensorProto`'s
//! `dtype` (1) precedes its payload fields, in every serializer's field order.

use super::super::tfserving::{
    REQUEST_INPUTS, RESPONSE_OUTPUTS, TENSOR_CONTENT, TENSOR_DTYPE, typed_field,
};
use super::plan::{LenAction, ModelDraft, Plan, TagAction, WireType, text};
use super::{Direction, TensorStart};
use crate::DType;

const REQUEST_MODEL_SPEC: u32 = 1;
const RESPONSE_MODEL_SPEC: u32 = 2;

// ModelSpec.
const SPEC_NAME: u32 = 1;
const SPEC_VERSION: u32 = 2;
const SPEC_SIGNATURE: u32 = 3;
const SPEC_VERSION_LABEL: u32 = 4;

/// One message type of TF Serving's `Predict`.
#[derive(Debug)]
pub(super) enum Frame {
    /// `PredictRequest` / `PredictResponse`.
    Predict { map_field: u32, spec_field: u32 },
    /// One entry of the tensor map; `name` is `None` when the key was too long to read.
    Entry { name: Option<String> },
    /// `TensorProto` of the tensor called `name`.
    Tensor {
        name: Option<String>,
        dtype: Option<DType>,
    },
    /// `ModelSpec`.
    ModelSpec,
    /// `google.protobuf.Int64Value` of `ModelSpec.version`.
    Version { value: u64 },
}

impl Frame {
    pub(super) fn predict(direction: Direction) -> Frame {
        match direction {
            Direction::Request => Frame::Predict {
                map_field: REQUEST_INPUTS,
                spec_field: REQUEST_MODEL_SPEC,
            },
            Direction::Response => Frame::Predict {
                map_field: RESPONSE_OUTPUTS,
                spec_field: RESPONSE_MODEL_SPEC,
            },
        }
    }
}

impl Plan for Frame {
    fn on_tag(&mut self, number: u32, wire_type: WireType, _model: &mut ModelDraft) -> TagAction {
        let is_len = wire_type == WireType::Len;
        match self {
            // The whole-message locator parses these fields as messages.
            Frame::Predict { map_field, .. } if number == *map_field && !is_len => {
                TagAction::Malformed
            }
            Frame::Entry { .. } if number == 2 && !is_len => TagAction::Malformed,
            Frame::Tensor { .. } if number == TENSOR_DTYPE && wire_type == WireType::Varint => {
                TagAction::Deliver
            }
            Frame::Version { .. } if number == 1 && wire_type == WireType::Varint => {
                TagAction::Deliver
            }
            _ => TagAction::Pass,
        }
    }

    fn on_len(&mut self, number: u32, len: usize, model: &mut ModelDraft) -> LenAction<Frame> {
        match self {
            Frame::Predict { map_field, .. } if number == *map_field => LenAction::Descend {
                frame: Frame::Entry {
                    name: Some(String::new()),
                },
                fatal: true,
            },
            // The whole-message locator does not parse the spec: a malformed one only
            // leaves the model unknown.
            Frame::Predict { spec_field, .. } if number == *spec_field && model.open() => {
                LenAction::Descend {
                    frame: Frame::ModelSpec,
                    fatal: false,
                }
            }
            Frame::Entry { .. } if number == 1 => LenAction::Capture,
            Frame::Entry { name } if number == 2 => LenAction::Descend {
                frame: Frame::Tensor {
                    name: name.clone(),
                    dtype: None,
                },
                fatal: true,
            },
            Frame::Tensor {
                name: Some(name),
                dtype,
            } if len > 0 => {
                let (field_dtype, elem_size) = match (number, *dtype) {
                    (TENSOR_CONTENT, Some(dtype)) => (dtype, dtype.elem_size()),
                    (TENSOR_CONTENT, None) => return LenAction::Skip,
                    (number, _) => match typed_field(number) {
                        Some(typed) => typed,
                        None => return LenAction::Skip,
                    },
                };
                LenAction::Payload(TensorStart {
                    len,
                    elem_size,
                    name: name.clone(),
                    dtype: dtype.unwrap_or(field_dtype),
                })
            }
            Frame::ModelSpec if number == SPEC_VERSION => LenAction::Descend {
                frame: Frame::Version { value: 0 },
                fatal: false,
            },
            Frame::ModelSpec
                if matches!(number, SPEC_NAME | SPEC_SIGNATURE | SPEC_VERSION_LABEL) =>
            {
                LenAction::Capture
            }
            _ => LenAction::Skip,
        }
    }

    fn on_varint(&mut self, _number: u32, value: u64, _model: &mut ModelDraft) {
        match self {
            Frame::Tensor { dtype, .. } => *dtype = DType::from_tf(value),
            Frame::Version { value: v } => *v = value,
            _ => {}
        }
    }

    fn on_capture(&mut self, number: u32, bytes: Option<&[u8]>, model: &mut ModelDraft) {
        match self {
            Frame::Entry { name } => *name = bytes.map(text),
            Frame::ModelSpec => {
                let value = bytes.map(text).unwrap_or_default();
                model.edit(|id| match number {
                    SPEC_NAME => id.name = value,
                    SPEC_SIGNATURE => id.signature = value,
                    _ => id.version = value,
                });
            }
            _ => {}
        }
    }

    fn end(self, parent: Option<&mut Frame>, model: &mut ModelDraft) {
        match (self, parent) {
            (Frame::Version { value }, Some(Frame::ModelSpec)) => {
                // An int64 on the wire: a negative version is sign-extended to 64 bits.
                model.edit(|id| id.version = (value as i64).to_string());
            }
            (Frame::ModelSpec | Frame::Predict { .. }, _) => model.settle(),
            _ => {}
        }
    }
}
