//! Finding tensor byte ranges inside serialized protobuf messages, without a full decode.
//!
//! A [`Locator`] knows, by gRPC method path and [`Direction`], where the tensor payloads
//! of a message are: the built-in protocols (KServe v2 / Open Inference Protocol and
//! TensorFlow Serving `Predict`) and any [`TaggedRule`]s from configuration. It walks the
//! wire format ([`wire`]) and returns each payload's byte range with the element size
//! that drives Blosc's shuffle.
//!
//! A locator never fails a call: a message it cannot parse (or a method it does not
//! know) gives no ranges, and the message then travels as it is.
//!
//! Element sizes: a range's `elem_size` is the width of the values *as stored in the
//! range*. Raw tensor bytes and fixed-width packed fields (`float`, `double`) carry the
//! dtype's width. Packed varint fields (`int32`, `int64`, `uint32`, `uint64`, `bool`
//! contents, TF `half_val`) have no fixed width on the wire, so they are located with
//! element size 1: they are still worth compressing as bytes, and the decoder puts back
//! exactly the bytes it was given. Variable-length elements (KServe `BYTES`, TF strings)
//! also have element size 1. A range's `dtype` is the tensor's declared element type
//! (for metrics and the tuner), or the field's type where the message declares none.

mod kserve;
mod stream;
mod tagged;
mod tfserving;
pub mod wire;

use std::sync::Arc;

pub use stream::{MAX_CAPTURE, ModelId, Span, StreamWalk, TensorStart};
pub use tagged::{MAX_PATH_LEN, RuleError, TaggedRule};

use crate::DType;

/// gRPC method path of the KServe v2 unary inference call.
pub const KSERVE_MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
/// gRPC method path of the KServe v2 (Triton) streaming inference call.
pub const KSERVE_MODEL_STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";
/// gRPC method path of TensorFlow Serving's `Predict`.
pub const TF_SERVING_PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";

/// Which way a message travels: the same method has different request and response types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// The bytes of one tensor payload inside a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorRange<'a> {
    /// Offset of the first payload byte in the message (after tag and length prefix).
    pub offset: usize,
    /// Number of payload bytes; never 0.
    pub len: usize,
    /// Width of one stored value, the Blosc typesize (see the module docs).
    pub elem_size: usize,
    /// Tensor name from the message, "" when the protocol or rule gives none.
    pub name: &'a str,
    /// Element type of the tensor.
    pub dtype: DType,
}

/// Where tensors are, by method: the built-in protocols plus configured rules.
///
/// Cheap to clone and share between threads. `Default` knows the built-in protocols only.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    rules: Arc<[TaggedRule]>,
}

impl Locator {
    /// The built-in protocols plus `rules`. For a method and direction that some rule
    /// names, the rules alone decide (they may override a built-in protocol).
    pub fn new(rules: Vec<TaggedRule>) -> Self {
        Locator {
            rules: rules.into(),
        }
    }

    /// The configured rules.
    pub fn rules(&self) -> &[TaggedRule] {
        &self.rules
    }

    /// Whether messages of `method` in `direction` may hold tensors this locator finds;
    /// when false, [`Locator::locate`] always returns nothing.
    pub fn knows(&self, method: &str, direction: Direction) -> bool {
        self.rules.iter().any(|r| r.applies_to(method, direction)) || builtin(method).is_some()
    }

    /// The tensor payloads of `msg`, a serialized message of `method` going in
    /// `direction`: sorted by offset, non-overlapping, none empty. Empty when the method
    /// is unknown or the message does not parse as the protocol says.
    pub fn locate<'a>(
        &self,
        method: &str,
        direction: Direction,
        msg: &'a [u8],
    ) -> Vec<TensorRange<'a>> {
        let mut out = Vec::new();
        let mut ruled = false;
        for rule in self
            .rules
            .iter()
            .filter(|r| r.applies_to(method, direction))
        {
            ruled = true;
            if rule.locate(msg, &mut out).is_err() {
                return Vec::new();
            }
        }
        if !ruled {
            let Some(protocol) = builtin(method) else {
                return out;
            };
            if protocol(direction, msg, &mut out).is_err() {
                return Vec::new();
            }
        }
        normalize(&mut out);
        out
    }
}

/// A built-in protocol's locator: appends ranges, fails on a malformed message.
type Protocol =
    for<'a> fn(Direction, &'a [u8], &mut Vec<TensorRange<'a>>) -> Result<(), wire::WireError>;

fn builtin(method: &str) -> Option<Protocol> {
    match method {
        KSERVE_MODEL_INFER => Some(kserve::model_infer),
        KSERVE_MODEL_STREAM_INFER => Some(kserve::model_stream_infer),
        TF_SERVING_PREDICT => Some(tfserving::predict),
        _ => None,
    }
}

/// Sorts by offset and drops empty ranges and any range overlapping an earlier one (two
/// rules may name the same field).
fn normalize(ranges: &mut Vec<TensorRange<'_>>) {
    ranges.retain(|r| r.len > 0);
    ranges.sort_by_key(|r| (r.offset, std::cmp::Reverse(r.len)));
    let mut end = 0;
    ranges.retain(|r| {
        if r.offset < end {
            return false;
        }
        end = r.offset + r.len;
        true
    });
}

/// A field's bytes as a tensor name; names that are not UTF-8 are reported as "".
fn name_of(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_is_shareable() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Locator>();
    }

    #[test]
    fn unknown_method_gives_nothing() {
        let locator = Locator::default();
        let msg = [0x3a, 4, 1, 2, 3, 4];
        assert!(
            locator
                .locate("/x.Y/Z", Direction::Request, &msg)
                .is_empty()
        );
        assert!(!locator.knows("/x.Y/Z", Direction::Request));
        assert!(locator.knows(KSERVE_MODEL_INFER, Direction::Response));
    }

    #[test]
    fn normalize_sorts_and_drops_overlaps() {
        let r = |offset, len| TensorRange {
            offset,
            len,
            elem_size: 1,
            name: "",
            dtype: DType::U8,
        };
        let mut ranges = vec![r(10, 5), r(0, 4), r(12, 2), r(4, 0), r(15, 1)];
        normalize(&mut ranges);
        assert_eq!(ranges, vec![r(0, 4), r(10, 5), r(15, 1)]);
    }
}
