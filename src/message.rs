//! Encode and decode whole gRPC messages: locate tensors, choose settings, build containers.

use std::time::Duration;

use crate::{CompressOptions, DType};

/// What a chooser knows of a tensor when it picks a setting.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    /// gRPC method path, e.g. `/inference.GRPCInferenceService/ModelInfer`.
    pub method: &'a str,
    /// Tensor name from the message ("" when the protocol has none).
    pub name: &'a str,
    pub dtype: DType,
    /// Element size in bytes, the Blosc typesize.
    pub elem_size: usize,
}

/// What happened to one tensor, for metrics and for the tuner's drift check.
#[derive(Debug, Clone)]
pub struct TensorOutcome {
    pub name: String,
    pub dtype: DType,
    pub options: CompressOptions,
    pub original_len: usize,
    pub compressed_len: usize,
    pub compress_time: Duration,
}

/// Picks the compression setting of each tensor; `None` leaves the tensor as it is.
///
/// Implementations: a fixed setting with a size threshold, and the auto-tuner.
pub trait Chooser: Send + Sync + 'static {
    /// The setting for this tensor, or `None` to leave it uncompressed in the skeleton.
    fn choose(&self, tensor: &TensorInfo<'_>, data: &[u8]) -> Option<CompressOptions>;
    /// Feedback after compression; the tuner uses it to notice drift.
    fn observe(&self, _tensor: &TensorInfo<'_>, _outcome: &TensorOutcome) {}
}

/// A message encoded as a bloscar container, with what happened to each tensor.
#[derive(Debug, Clone)]
pub struct EncodedMessage {
    pub bytes: Vec<u8>,
    pub tensors: Vec<TensorOutcome>,
}

/// Encodes and decodes whole gRPC messages; cheap to share across threads (`Arc`).
///
/// Contract (implemented by the core):
/// `fn encode(&self, method: &str, msg: &[u8]) -> Result<Option<EncodedMessage>, Error>`:
///   `None` when no tensor is worth compressing: the message then travels as identity.
/// `fn decode(&self, container: &[u8]) -> Result<Vec<u8>, Error>`: the exact original bytes.
pub struct MessageCodec {}
