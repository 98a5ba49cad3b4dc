//! KServe v2 / Open Inference Protocol: `ModelInferRequest`, `ModelInferResponse`,
//! `ModelStreamInferResponse` (field numbers as in `proto/test/kserve.proto`).
//!
//! Raw contents are matched to tensors by position. In a request, `raw_input_contents[k]`
//! belongs to the k-th input that has neither typed `contents` nor a
//! `shared_memory_region` parameter (Triton's rule: inputs in shared memory or with typed
//! contents have no raw entry). In a response, `raw_output_contents[k]` belongs to the
//! k-th output, whatever its other fields (the rule of tritonclient's `as_numpy`, which
//! counts every output). A raw entry without a matching tensor, or whose tensor has a
//! datatype outside the protocol, is left alone.

use super::wire::{Field, Fields, WireError};
use super::{Direction, TensorRange, name_of};
use crate::DType;

/// `ModelInferRequest.inputs` / `ModelInferResponse.outputs`.
pub(super) const TENSORS: u32 = 5;
pub(super) const REQUEST_RAW: u32 = 7;
pub(super) const RESPONSE_RAW: u32 = 6;
/// `ModelStreamInferResponse.infer_response`.
pub(super) const STREAM_RESPONSE: u32 = 2;

// InferInputTensor / InferOutputTensor.
pub(super) const TENSOR_NAME: u32 = 1;
pub(super) const TENSOR_DATATYPE: u32 = 2;
pub(super) const TENSOR_PARAMETERS: u32 = 4;
pub(super) const TENSOR_CONTENTS: u32 = 5;

/// The parameter key that puts a tensor in shared memory.
pub(super) const SHARED_MEMORY_REGION: &[u8] = b"shared_memory_region";

/// `ModelInfer`: a `ModelInferRequest` in, a `ModelInferResponse` out.
pub(super) fn model_infer<'a>(
    direction: Direction,
    msg: &'a [u8],
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    match direction {
        Direction::Request => infer_message(Fields::new(msg), REQUEST_RAW, out),
        Direction::Response => infer_message(Fields::new(msg), RESPONSE_RAW, out),
    }
}

/// `ModelStreamInfer`: `ModelInferRequest`s in, `ModelStreamInferResponse`s out.
pub(super) fn model_stream_infer<'a>(
    direction: Direction,
    msg: &'a [u8],
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    match direction {
        Direction::Request => model_infer(direction, msg, out),
        Direction::Response => {
            let mut top = Fields::new(msg);
            while let Some(field) = top.next() {
                let field = field?;
                if field.number == STREAM_RESPONSE {
                    let Some(response) = top.nested(&field) else {
                        return Err(WireError::TooDeep(field.offset));
                    };
                    infer_message(response, RESPONSE_RAW, out)?;
                }
            }
            Ok(())
        }
    }
}

/// What the raw-content matching needs to know of one input or output tensor.
struct TensorInfo<'a> {
    name: &'a str,
    dtype: Option<DType>,
    /// Whether a raw entry belongs to this tensor (see the module docs).
    takes_raw: bool,
}

/// A `ModelInferRequest` (`raw_field` 7) or `ModelInferResponse` (`raw_field` 6).
fn infer_message<'a>(
    mut walker: Fields<'a>,
    raw_field: u32,
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    let is_request = raw_field == REQUEST_RAW;
    let mut tensors: Vec<TensorInfo<'a>> = Vec::new();
    let mut raw: Vec<Field<'a>> = Vec::new();
    while let Some(field) = walker.next() {
        let field = field?;
        match field.number {
            TENSORS => {
                let Some(tensor) = walker.nested(&field) else {
                    return Err(WireError::TooDeep(field.offset));
                };
                tensors.push(tensor_info(tensor, is_request, out)?);
            }
            n if n == raw_field && field.bytes().is_some() => raw.push(field),
            _ => {}
        }
    }
    let raw_tensors = tensors.iter().filter(|t| t.takes_raw);
    for (field, tensor) in raw.iter().zip(raw_tensors) {
        let (Some(bytes), Some(dtype)) = (field.bytes(), tensor.dtype) else {
            continue;
        };
        out.push(TensorRange {
            offset: field.offset,
            len: bytes.len(),
            elem_size: dtype.elem_size(),
            name: tensor.name,
            dtype,
        });
    }
    Ok(())
}

/// Reads one `InferInputTensor` / `InferOutputTensor`, and locates its typed contents.
fn tensor_info<'a>(
    tensor: Fields<'a>,
    is_request: bool,
    out: &mut Vec<TensorRange<'a>>,
) -> Result<TensorInfo<'a>, WireError> {
    let mut name = "";
    let mut dtype = None;
    let mut has_contents = false;
    let mut in_shared_memory = false;
    let mut walker = tensor.clone();
    while let Some(field) = walker.next() {
        let field = field?;
        match (field.number, field.bytes()) {
            (TENSOR_NAME, Some(bytes)) => name = name_of(bytes),
            (TENSOR_DATATYPE, Some(bytes)) => {
                dtype = std::str::from_utf8(bytes).ok().and_then(DType::from_kserve);
            }
            (TENSOR_PARAMETERS, Some(_)) => {
                let Some(entry) = walker.nested(&field) else {
                    return Err(WireError::TooDeep(field.offset));
                };
                if map_key(entry)? == Some(SHARED_MEMORY_REGION) {
                    in_shared_memory = true;
                }
            }
            (TENSOR_CONTENTS, Some(_)) => has_contents = true,
            _ => {}
        }
    }
    if has_contents {
        let mut walker = tensor;
        while let Some(field) = walker.next() {
            let field = field?;
            if field.number == TENSOR_CONTENTS {
                let Some(contents) = walker.nested(&field) else {
                    return Err(WireError::TooDeep(field.offset));
                };
                typed_contents(contents, name, dtype, out)?;
            }
        }
    }
    Ok(TensorInfo {
        name,
        dtype,
        // A response's raw entries are matched to every output in order.
        takes_raw: !is_request || !(has_contents || in_shared_memory),
    })
}

/// The key (field 1) of a map entry, if present.
fn map_key<'a>(entry: Fields<'a>) -> Result<Option<&'a [u8]>, WireError> {
    let mut key = None;
    for field in entry {
        let field = field?;
        if field.number == 1 {
            key = field.bytes();
        }
    }
    Ok(key)
}

/// `InferTensorContents`: fields 1-7 are packed repeated scalars, 8 is repeated bytes.
fn typed_contents<'a>(
    contents: Fields<'a>,
    name: &'a str,
    declared: Option<DType>,
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    for field in contents {
        let field = field?;
        let Some((field_dtype, elem_size)) = contents_field(field.number) else {
            continue;
        };
        // Unpacked scalars (a legal but unusual encoding) are single values: skipped.
        let Some(bytes) = field.bytes() else { continue };
        out.push(TensorRange {
            offset: field.offset,
            len: bytes.len(),
            elem_size,
            name,
            dtype: declared.unwrap_or(field_dtype),
        });
    }
    Ok(())
}

/// An `InferTensorContents` field: (its own element type, the width of a stored value);
/// fields 1-7 are packed repeated scalars, 8 is repeated bytes.
pub(super) fn contents_field(number: u32) -> Option<(DType, usize)> {
    Some(match number {
        1 => (DType::Bool, 1),
        2 => (DType::I32, 1),
        3 => (DType::I64, 1),
        4 => (DType::U32, 1),
        5 => (DType::U64, 1),
        6 => (DType::F32, 4),
        7 => (DType::F64, 8),
        8 => (DType::Bytes, 1),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{KSERVE_MODEL_INFER, Locator};
    use super::*;

    fn len_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
        out.push((number << 3 | 2) as u8);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }

    fn input(name: &str, datatype: &str, extra: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        len_field(&mut t, 1, name.as_bytes());
        len_field(&mut t, 2, datatype.as_bytes());
        t.extend_from_slice(extra);
        t
    }

    #[test]
    fn raw_inputs_skip_shared_memory_and_typed() {
        let mut shm_param = Vec::new();
        let mut entry = Vec::new();
        len_field(&mut entry, 1, SHARED_MEMORY_REGION);
        len_field(&mut entry, 2, &[0x1a, 1, b'r']);
        len_field(&mut shm_param, 4, &entry);
        let mut typed = Vec::new();
        len_field(&mut typed, 5, &[0x32, 4, 0, 0, 0x80, 0x3f]);

        let mut msg = Vec::new();
        len_field(&mut msg, 1, b"m");
        len_field(&mut msg, 5, &input("a", "FP32", &[]));
        len_field(&mut msg, 5, &input("shm", "FP32", &shm_param));
        len_field(&mut msg, 5, &input("typed", "FP32", &typed));
        len_field(&mut msg, 5, &input("b", "INT16", &[]));
        len_field(&mut msg, 7, &[1, 2, 3, 4, 5, 6, 7, 8]);
        len_field(&mut msg, 7, &[9, 10]);

        let ranges = Locator::default().locate(KSERVE_MODEL_INFER, Direction::Request, &msg);
        let got: Vec<_> = ranges
            .iter()
            .map(|r| {
                (
                    r.name,
                    r.dtype,
                    r.elem_size,
                    &msg[r.offset..r.offset + r.len],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("typed", DType::F32, 4, &[0, 0, 0x80, 0x3f][..]),
                ("a", DType::F32, 4, &[1, 2, 3, 4, 5, 6, 7, 8][..]),
                ("b", DType::I16, 2, &[9, 10][..]),
            ]
        );
    }

    #[test]
    fn truncated_request_gives_nothing() {
        let mut msg = Vec::new();
        len_field(&mut msg, 5, &input("a", "FP32", &[]));
        len_field(&mut msg, 7, &[1, 2, 3, 4]);
        for cut in 0..msg.len() {
            let ranges =
                Locator::default().locate(KSERVE_MODEL_INFER, Direction::Request, &msg[..cut]);
            assert!(ranges.iter().all(|r| r.offset + r.len <= cut));
        }
        msg.truncate(msg.len() - 1);
        assert!(
            Locator::default()
                .locate(KSERVE_MODEL_INFER, Direction::Request, &msg)
                .is_empty()
        );
    }
}
