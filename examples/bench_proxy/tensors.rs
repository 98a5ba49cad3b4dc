//! The tensors and KServe messages the benchmark sends.

use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::pb::inference::model_infer_response::InferOutputTensor;
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse};

/// A xorshift32 generator: cheap, deterministic noise for the tensors.
struct XorShift(u32);

impl XorShift {
    fn new(seed: u32) -> XorShift {
        XorShift(seed.wrapping_mul(2_654_435_761).max(1))
    }

    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// A smooth image-like FP32 tensor with a little noise, `bytes` long (rounded down to
/// whole elements).
pub fn smooth_fp32(bytes: usize, seed: u32) -> Vec<u8> {
    let mut noise = XorShift::new(seed);
    let mut out = Vec::with_capacity(bytes / 4 * 4);
    for i in 0..bytes / 4 {
        let jitter = (noise.next() % 1000) as f32 / 1000.0 - 0.5;
        let (x, y) = ((i % 1024) as f32, ((i / 1024) % 65536) as f32);
        let value = 100.0 * ((x * 0.01).sin() + (y * 0.013).cos()) + jitter;
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Uniformly random bytes: no codec can shrink them, so only the proxies' cost shows.
pub fn random_bytes(bytes: usize, seed: u32) -> Vec<u8> {
    let mut noise = XorShift::new(seed);
    let mut out = Vec::with_capacity(bytes + 4);
    while out.len() < bytes {
        out.extend_from_slice(&noise.next().to_le_bytes());
    }
    out.truncate(bytes);
    out
}

/// A ModelInfer request carrying `tensor` as one FP32 input in `raw_input_contents`.
pub fn infer_request(tensor: Vec<u8>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "echo".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, (tensor.len() / 4) as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![tensor],
        ..Default::default()
    }
}

/// The echo server's answer to `request`: its tensors as outputs.
pub fn echo(request: ModelInferRequest) -> ModelInferResponse {
    ModelInferResponse {
        model_name: request.model_name,
        id: request.id,
        outputs: request
            .inputs
            .into_iter()
            .map(|input| InferOutputTensor {
                name: input.name,
                datatype: input.datatype,
                shape: input.shape,
                ..Default::default()
            })
            .collect(),
        raw_output_contents: request.raw_input_contents,
        ..Default::default()
    }
}
