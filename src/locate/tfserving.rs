//! TensorFlow Serving `Predict`: the `map<string, TensorProto>` of `PredictRequest.inputs`
//! (field 2) and `PredictResponse.outputs` (field 1); field numbers as in
//! `proto/test/tfserving.proto`.
//!
//! In a `TensorProto`, `tensor_content` (raw little-endian values) takes the element size
//! of `dtype`, and is left alone when the dtype's layout is not known (quantized types,
//! `DT_INT4`). The typed repeated fields are located too: the fixed-width ones (`float_val`,
//! `double_val`, `scomplex_val`, `dcomplex_val`) with their width, the varint ones and
//! the strings with element size 1.

use super::wire::{Fields, WireError};
use super::{Direction, TensorRange, name_of};
use crate::DType;

pub(super) const REQUEST_INPUTS: u32 = 2;
pub(super) const RESPONSE_OUTPUTS: u32 = 1;

pub(super) const TENSOR_DTYPE: u32 = 1;
pub(super) const TENSOR_CONTENT: u32 = 4;

/// `Predict`: a `PredictRequest` in, a `PredictResponse` out.
pub(super) fn predict<'a>(
    direction: Direction,
    msg: &'a [u8],
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    let map_field = match direction {
        Direction::Request => REQUEST_INPUTS,
        Direction::Response => RESPONSE_OUTPUTS,
    };
    let mut top = Fields::new(msg);
    while let Some(field) = top.next() {
        let field = field?;
        if field.number != map_field {
            continue;
        }
        let Some(entry) = top.nested(&field) else {
            return Err(WireError::TooDeep(field.offset));
        };
        map_entry(entry, out)?;
    }
    Ok(())
}

/// One `map<string, TensorProto>` entry: key = field 1, value = field 2.
fn map_entry<'a>(entry: Fields<'a>, out: &mut Vec<TensorRange<'a>>) -> Result<(), WireError> {
    let mut name = "";
    for field in entry.clone() {
        let field = field?;
        if let (1, Some(bytes)) = (field.number, field.bytes()) {
            name = name_of(bytes);
        }
    }
    let mut walker = entry;
    while let Some(field) = walker.next() {
        let field = field?;
        if field.number == 2 {
            let Some(tensor) = walker.nested(&field) else {
                return Err(WireError::TooDeep(field.offset));
            };
            tensor_proto(tensor, name, out)?;
        }
    }
    Ok(())
}

/// Locates the payload fields of one `TensorProto`.
pub(super) fn tensor_proto<'a>(
    tensor: Fields<'a>,
    name: &'a str,
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    let mut dtype = None;
    for field in tensor.clone() {
        let field = field?;
        if let (TENSOR_DTYPE, Some(value)) = (field.number, field.varint()) {
            dtype = DType::from_tf(value);
        }
    }
    for field in tensor {
        let field = field?;
        let Some(bytes) = field.bytes() else { continue };
        let (field_dtype, elem_size) = match (field.number, dtype) {
            (TENSOR_CONTENT, Some(dtype)) => (dtype, dtype.elem_size()),
            (TENSOR_CONTENT, None) => continue,
            (number, _) => match typed_field(number) {
                Some(typed) => typed,
                None => continue,
            },
        };
        out.push(TensorRange {
            offset: field.offset,
            len: bytes.len(),
            elem_size,
            name,
            dtype: dtype.unwrap_or(field_dtype),
        });
    }
    Ok(())
}

/// A typed repeated field of `TensorProto`: (its own element type, the width of a stored
/// value).
pub(super) fn typed_field(number: u32) -> Option<(DType, usize)> {
    Some(match number {
        5 => (DType::F32, 4),         // float_val
        6 => (DType::F64, 8),         // double_val
        7 => (DType::I32, 1),         // int_val, varints
        8 => (DType::Bytes, 1),       // string_val, one field per element
        9 => (DType::Complex64, 4),   // scomplex_val
        10 => (DType::I64, 1),        // int64_val, varints
        11 => (DType::Bool, 1),       // bool_val, varints
        12 => (DType::Complex128, 8), // dcomplex_val
        13 => (DType::F16, 1),        // half_val, varints of the 16-bit patterns
        16 => (DType::U32, 1),        // uint32_val, varints
        17 => (DType::U64, 1),        // uint64_val, varints
        18 => (DType::F8E5M2, 1),     // float8_val, bytes
        _ => return None,
    })
}
