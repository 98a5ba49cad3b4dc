//! Just enough KServe v2 protobuf for the demo: build a ModelInferRequest, and turn a
//! request into the response an identity model gives.
//!
//! The echo works on the wire format: `InferInputTensor` and `InferOutputTensor` share
//! their field numbers (name 1, datatype 2, shape 3, parameters 4, contents 5), so the
//! request's `inputs` (field 5) are copied as the response's `outputs` (field 5) and
//! `raw_input_contents` (field 7) become `raw_output_contents` (field 6), byte for byte.

use bloscar::locate::wire::{Fields, Value, WireError};

use super::tensors::DemoTensor;

/// Unary inference method of the KServe v2 protocol.
pub use bloscar::locate::KSERVE_MODEL_INFER as MODEL_INFER;

const WIRE_LEN: u64 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A serialized `ModelInferRequest` for `model` carrying `tensor` as one raw input.
pub fn infer_request(model: &str, id: &str, tensor: &DemoTensor) -> Vec<u8> {
    let mut input = Vec::new();
    put_len_field(&mut input, 1, tensor.name.as_bytes());
    put_len_field(&mut input, 2, tensor.datatype.as_bytes());
    let mut shape = Vec::new();
    for &d in &tensor.shape {
        put_varint(&mut shape, d as u64);
    }
    put_len_field(&mut input, 3, &shape);

    let mut msg = Vec::with_capacity(tensor.data.len() + 128);
    put_len_field(&mut msg, 1, model.as_bytes());
    put_len_field(&mut msg, 3, id.as_bytes());
    put_len_field(&mut msg, 5, &input);
    put_len_field(&mut msg, 7, &tensor.data);
    msg
}

/// The `ModelInferResponse` an identity model answers `request` with: model name,
/// version, id, the inputs as outputs and the raw input contents as raw output contents.
pub fn echo_response(request: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(request.len());
    for field in Fields::new(request) {
        let field = field?;
        let Value::Len(bytes) = field.value else {
            continue;
        };
        match field.number {
            1..=3 | 5 => put_len_field(&mut out, field.number, bytes),
            7 => put_len_field(&mut out, 6, bytes),
            // parameters (4) and requested outputs (6) have no place in the response.
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor() -> DemoTensor {
        DemoTensor {
            label: "t",
            name: "x",
            datatype: "FP32",
            shape: vec![2, 3],
            data: (0..24u8).collect(),
        }
    }

    #[test]
    fn echo_turns_raw_inputs_into_raw_outputs() {
        let t = tensor();
        let request = infer_request("m", "7", &t);
        let response = echo_response(&request).unwrap();
        let fields: Vec<_> = Fields::new(&response).map(Result::unwrap).collect();
        let numbers: Vec<u32> = fields.iter().map(|f| f.number).collect();
        assert_eq!(numbers, [1, 3, 5, 6]);
        assert_eq!(fields[0].bytes(), Some(&b"m"[..]));
        assert_eq!(fields[1].bytes(), Some(&b"7"[..]));
        assert_eq!(fields[3].bytes(), Some(&t.data[..]));
        // The tensor description travels unchanged.
        let input = Fields::new(&request)
            .map(Result::unwrap)
            .find(|f| f.number == 5)
            .unwrap();
        assert_eq!(fields[2].bytes(), input.bytes());
    }

    #[test]
    fn echo_rejects_malformed_messages() {
        assert!(echo_response(&[0x3a, 0x10, 1, 2]).is_err());
    }

    #[test]
    fn request_is_valid_kserve() {
        // Checked with the project's generated KServe types.
        use prost::Message;
        let t = tensor();
        let req =
            bloscar::pb::inference::ModelInferRequest::decode(&infer_request("m", "7", &t)[..])
                .unwrap();
        assert_eq!(req.model_name, "m");
        assert_eq!(req.inputs[0].datatype, "FP32");
        assert_eq!(req.inputs[0].shape, vec![2, 3]);
        assert_eq!(req.raw_input_contents, vec![t.data.clone()]);
        let resp = bloscar::pb::inference::ModelInferResponse::decode(
            &echo_response(&infer_request("m", "7", &t)).unwrap()[..],
        )
        .unwrap();
        assert_eq!(resp.outputs[0].name, "x");
        assert_eq!(resp.raw_output_contents, vec![t.data]);
    }
}
