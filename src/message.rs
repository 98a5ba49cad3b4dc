//! Encode and decode whole gRPC messages: locate tensors, choose settings, build containers.

use std::sync::Arc;
use std::time::Duration;

use crate::container::{self, Limits, PatchSpec};
use crate::locate::{Direction, Locator, TensorRange};
use crate::{CompressOptions, DType, Error};

/// What a chooser knows of a tensor when it picks a setting.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    /// gRPC method path, e.g. `/inference.GRPCInferenceService/ModelInfer`.
    pub method: &'a str,
    /// Tensor name from the message ("" when the protocol has none).
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Element size in bytes, the Blosc typesize.
    pub elem_size: usize,
    /// The model the message is for, as the caller keys it (e.g. `resnet50:1` for a
    /// KServe model and version); "" when there is none. Two models sharing a method
    /// and tensor names get their own settings.
    pub model: &'a str,
    /// The measured goodput of the link to this message's peer in bytes per second;
    /// `None` while it has not been measured.
    pub link_bytes_per_sec: Option<f64>,
    /// Bytes of the whole tensor. A streaming encoder shows the chooser only the first
    /// chunk, but whether compressing pays depends on the whole: the chunks of a long
    /// tensor are compressed, sent and restored in a pipeline. A value below the data
    /// shown (e.g. 0) means the data shown is the whole tensor.
    pub len: usize,
}

/// What happened to one tensor, for metrics and for the tuner's drift check.
#[derive(Debug, Clone)]
pub struct TensorOutcome {
    /// Tensor name from the message ("" when the protocol has none).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// The setting it was compressed with.
    pub options: CompressOptions,
    /// Its bytes in the message.
    pub original_len: usize,
    /// Its bytes in the container.
    pub compressed_len: usize,
    /// Time Blosc took to compress it.
    pub compress_time: Duration,
}

/// What sending one compressed tensor really cost, for the tuner's real-time check.
///
/// When a message holds several tensors and only whole-message figures are known, the
/// caller may report the message under its largest tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageCost {
    /// Bytes of the tensor as the application sent it.
    pub original_len: usize,
    /// Bytes that crossed the link for it.
    pub wire_len: usize,
    /// Wall-clock seconds this side spent compressing it (under the machine's load).
    pub compress_secs: f64,
    /// Wall-clock seconds the peer spent decompressing it, when the peer reported them.
    pub peer_decompress_secs: Option<f64>,
    /// The measured link rate to the peer in bytes per second, when known.
    pub link_bytes_per_sec: Option<f64>,
}

/// Picks the compression setting of each tensor; `None` leaves the tensor as it is.
///
/// Implementations: a fixed setting with a size threshold, and the auto-tuner.
pub trait Chooser: Send + Sync + 'static {
    /// The setting for this tensor, or `None` to leave it uncompressed in the skeleton.
    fn choose(&self, tensor: &TensorInfo<'_>, data: &[u8]) -> Option<CompressOptions>;
    /// Feedback after compression; the tuner uses it to notice drift.
    fn observe(&self, _tensor: &TensorInfo<'_>, _outcome: &TensorOutcome) {}
    /// What a compressed tensor really cost end to end; the tuner stores a key whose
    /// compression stops paying.
    fn observe_cost(&self, _tensor: &TensorInfo<'_>, _cost: &MessageCost) {}
    /// Tensors shorter than this are never compressed, so a message shorter than this
    /// holds none worth looking for.
    fn min_tensor_len(&self) -> usize {
        0
    }
}

/// A message encoded as a bloscar container, with what happened to each tensor.
#[derive(Debug, Clone)]
pub struct EncodedMessage {
    /// The container as it travels.
    pub bytes: Vec<u8>,
    /// One outcome per compressed tensor, in message order.
    pub tensors: Vec<TensorOutcome>,
}

/// One setting for every tensor of at least `min_size` bytes; smaller tensors are left
/// alone.
///
/// Byte-shuffle becomes bit-shuffle for one-byte elements, where it could not reorder
/// anything (see [`CompressOptions::for_elem_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedChooser {
    /// The setting for every tensor it compresses.
    pub options: CompressOptions,
    /// Tensors smaller than this many bytes are left uncompressed.
    pub min_size: usize,
}

impl Chooser for FixedChooser {
    fn choose(&self, tensor: &TensorInfo<'_>, data: &[u8]) -> Option<CompressOptions> {
        (tensor.len.max(data.len()) >= self.min_size)
            .then(|| self.options.for_elem_size(tensor.elem_size))
    }

    fn min_tensor_len(&self) -> usize {
        self.min_size
    }
}

/// Encodes and decodes whole gRPC messages; cheap to share across threads (`Arc`).
///
/// Encoding locates the tensors of a message, asks the [`Chooser`] for a setting per
/// tensor and builds a container; decoding needs no schema and restores the exact
/// original bytes.
pub struct MessageCodec {
    locator: Locator,
    chooser: Arc<dyn Chooser>,
    limits: Limits,
}

impl MessageCodec {
    /// A codec that finds tensors with `locator`, compresses them as `chooser` says and
    /// decodes containers within `limits`.
    pub fn new(locator: Locator, chooser: Arc<dyn Chooser>, limits: Limits) -> Self {
        Self {
            locator,
            chooser,
            limits,
        }
    }

    /// The locator that finds tensors.
    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// The chooser that picks each tensor's setting.
    pub fn chooser(&self) -> &Arc<dyn Chooser> {
        &self.chooser
    }

    /// The limits containers are decoded within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Encodes `msg`, a serialized message of `method` going in `direction`.
    ///
    /// `None` when no tensor was chosen or the container would not be smaller than the
    /// message: the message then travels as identity.
    pub fn encode(
        &self,
        method: &str,
        direction: Direction,
        msg: &[u8],
    ) -> Result<Option<EncodedMessage>, Error> {
        let ranges = self.locator.locate(method, direction, msg);
        self.encode_ranges(method, msg, &ranges)
    }

    /// Encodes `msg` with tensors at `ranges` (sorted by offset, non-overlapping, inside
    /// `msg`), for callers that locate tensors themselves.
    pub fn encode_ranges(
        &self,
        method: &str,
        msg: &[u8],
        ranges: &[TensorRange<'_>],
    ) -> Result<Option<EncodedMessage>, Error> {
        let mut chosen = Vec::with_capacity(ranges.len());
        let mut specs = Vec::with_capacity(ranges.len());
        for range in ranges {
            let info = TensorInfo {
                method,
                name: range.name,
                dtype: range.dtype,
                elem_size: range.elem_size,
                model: "",
                link_bytes_per_sec: None,
                len: 0,
            };
            let Some(data) = range
                .offset
                .checked_add(range.len)
                .and_then(|end| msg.get(range.offset..end))
            else {
                continue;
            };
            if let Some(options) = self.chooser.choose(&info, data) {
                specs.push(PatchSpec {
                    offset: range.offset,
                    len: range.len,
                    elem_size: range.elem_size,
                    options,
                });
                chosen.push(info);
            }
        }
        if specs.is_empty() {
            return Ok(None);
        }
        let encoded = container::encode(msg, &specs)?;
        let mut tensors = Vec::with_capacity(specs.len());
        for ((info, spec), report) in chosen.iter().zip(&specs).zip(&encoded.patches) {
            let outcome = TensorOutcome {
                name: info.name.to_owned(),
                dtype: info.dtype,
                options: spec.options,
                original_len: spec.len,
                compressed_len: report.compressed_len,
                compress_time: report.compress_time,
            };
            self.chooser.observe(info, &outcome);
            tensors.push(outcome);
        }
        if encoded.bytes.len() >= msg.len() {
            return Ok(None);
        }
        Ok(Some(EncodedMessage {
            bytes: encoded.bytes,
            tensors,
        }))
    }

    /// The exact original bytes of a message encoded by [`MessageCodec::encode`].
    pub fn decode(&self, container: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(container::decode(container, &self.limits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::Direction;

    fn codec(min_size: usize) -> MessageCodec {
        let chooser = FixedChooser {
            options: CompressOptions::default(),
            min_size,
        };
        MessageCodec::new(Locator::default(), Arc::new(chooser), Limits::default())
    }

    fn range(offset: usize, len: usize, elem_size: usize) -> TensorRange<'static> {
        TensorRange {
            offset,
            len,
            elem_size,
            name: "t",
            dtype: DType::F32,
        }
    }

    /// A message with a header, a smooth float tensor, a gap, a mask and noise.
    fn message() -> (Vec<u8>, Vec<TensorRange<'static>>) {
        let mut msg = b"header".to_vec();
        let smooth = msg.len();
        msg.extend((0..4096).flat_map(|i| (i as f32 * 0.01).sin().to_le_bytes()));
        msg.extend_from_slice(b"gap");
        let mask = msg.len();
        msg.extend((0..8192).map(|i| u8::from(i % 1000 < 300)));
        let noise = msg.len();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        msg.extend((0..4096).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        let ranges = vec![
            range(smooth, 16384, 4),
            range(mask, 8192, 1),
            range(noise, 4096, 1),
        ];
        (msg, ranges)
    }

    #[test]
    fn encode_then_decode_restores_the_message() {
        let (msg, ranges) = message();
        let codec = codec(0);
        let method = "/x.Y/Z";
        let encoded = codec.encode_ranges(method, &msg, &ranges).unwrap().unwrap();
        assert!(encoded.bytes.len() < msg.len());
        assert_eq!(encoded.tensors.len(), 3);
        // Byte-shuffle became bit-shuffle for the one-byte mask.
        assert_eq!(encoded.tensors[1].options.shuffle, crate::Shuffle::Bit);
        assert!(encoded.tensors[1].compressed_len < 8192 / 20);
        assert_eq!(codec.decode(&encoded.bytes).unwrap(), msg);
    }

    #[test]
    fn small_or_incompressible_tensors_travel_as_identity() {
        let (msg, ranges) = message();
        assert!(
            codec(1 << 20)
                .encode_ranges("/m", &msg, &ranges)
                .unwrap()
                .is_none()
        );
        // Only the noise: the container would be larger than the message.
        let noise = &ranges[2..];
        assert!(codec(0).encode_ranges("/m", &msg, noise).unwrap().is_none());
        // Unknown methods have no tensors.
        let none = codec(0).encode("/x.Y/Z", Direction::Request, &msg).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn codec_is_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<MessageCodec>();
        let (msg, ranges) = message();
        let codec = Arc::new(codec(0));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let encoded = codec.encode_ranges("/m", &msg, &ranges).unwrap().unwrap();
                    assert_eq!(codec.decode(&encoded.bytes).unwrap(), msg);
                });
            }
        });
    }

    #[test]
    fn ranges_outside_the_message_are_skipped() {
        let (msg, mut ranges) = message();
        ranges.push(range(msg.len() - 2, 4, 1));
        ranges.push(range(usize::MAX, 2, 1));
        let encoded = codec(0)
            .encode_ranges("/m", &msg, &ranges)
            .unwrap()
            .unwrap();
        assert_eq!(encoded.tensors.len(), 3);
    }
}
