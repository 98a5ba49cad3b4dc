//! Property tests of the tensor locators on messages built with a real protobuf encoder
//! (prost types generated from `proto/`): every dtype, random shapes (empty ones too),
//! sizes that are not a multiple of the element size, every codec and shuffle mode.
//!
//! Each case builds a message twice: once with the tensors' bytes, once with every
//! fixed-width payload byte inverted. The bytes where the two encodings differ are
//! exactly the payloads, so the located ranges are checked against positions the
//! encoder chose, not against the locator's own arithmetic. Then the message is encoded
//! into a bloscar container and decoded back, bit-exact.
//!
//! The streaming walk ([`Locator::stream`]) is checked on the same messages, fed in
//! chunks of random sizes (1-byte chunks too): it finds exactly the whole-message
//! locator's ranges, and the model the message names.

use std::collections::BTreeMap;
use std::sync::Arc;

use bloscar::locate::{
    Direction, KSERVE_MODEL_INFER, KSERVE_MODEL_STREAM_INFER, Locator, ModelId, Span,
    TF_SERVING_PREDICT, TaggedRule, TensorRange,
};
use bloscar::pb::bloscar::v1::NdArray;
use bloscar::pb::example::imaging::v1::{Band, DenoiseRequest, DenoiseResponse};
use bloscar::pb::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelStreamInferResponse, infer_parameter::ParameterChoice,
    model_infer_request::InferInputTensor, model_infer_response::InferOutputTensor,
};
use bloscar::pb::tensorflow::serving::model_spec::VersionChoice;
use bloscar::pb::tensorflow::serving::{Int64Value, PredictRequest, PredictResponse};
use bloscar::pb::tensorflow::{TensorProto, TensorShapeProto, tensor_shape_proto::Dim};
use bloscar::{Codec, CompressOptions, DType, FixedChooser, Limits, MessageCodec, Shuffle};
use proptest::prelude::*;
use prost::Message;

/// A tensor as a test generates it: the bytes of its elements, and a second version with
/// every byte inverted (same length, every byte different).
#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    dtype: DType,
    shape: Vec<i64>,
    data: Vec<u8>,
}

impl Tensor {
    fn data(&self, flipped: bool) -> Vec<u8> {
        if flipped {
            self.data.iter().map(|b| !b).collect()
        } else {
            self.data.clone()
        }
    }

    /// The data as values of `T` (little-endian chunks of `size` bytes; a partial last
    /// chunk is dropped).
    fn values<T>(&self, flipped: bool, size: usize, from: impl Fn(&[u8]) -> T) -> Vec<T> {
        self.data(flipped).chunks_exact(size).map(from).collect()
    }
}

/// What the test expects the locator to report for one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    name: String,
    dtype: DType,
    elem_size: usize,
    /// The payload bytes of the unflipped message.
    bytes: Vec<u8>,
    /// Whether flipping the tensor flips every payload byte (false for varint fields).
    flips: bool,
}

fn expected(t: &Tensor, elem_size: usize, bytes: Vec<u8>, flips: bool) -> Option<Expected> {
    (!bytes.is_empty()).then(|| Expected {
        name: t.name.clone(),
        dtype: t.dtype,
        elem_size,
        bytes,
        flips,
    })
}

/// Checks `ranges` against `expected` (in message order) and against the flipped
/// encoding: the bytes that differ are exactly those of the flippable payloads.
fn check_ranges(msg: &[u8], flipped: &[u8], ranges: &[TensorRange<'_>], expected: &[Expected]) {
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
    let want: Vec<_> = expected
        .iter()
        .map(|e| (e.name.as_str(), e.dtype, e.elem_size, e.bytes.as_slice()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(msg.len(), flipped.len());
    let mut in_flipped_range = vec![false; msg.len()];
    for (r, e) in ranges.iter().zip(expected) {
        if e.flips {
            in_flipped_range[r.offset..r.offset + r.len].fill(true);
        }
    }
    for (i, (a, b)) in msg.iter().zip(flipped).enumerate() {
        assert_eq!(a != b, in_flipped_range[i], "byte {i}");
    }
}

/// Encodes into a container and decodes back; the result must be the exact message.
fn check_round_trip(
    locator: &Locator,
    method: &str,
    direction: Direction,
    msg: &[u8],
    opts: CompressOptions,
) {
    let chooser = FixedChooser {
        options: opts,
        min_size: 0,
    };
    let codec = MessageCodec::new(locator.clone(), Arc::new(chooser), Limits::default());
    // `None` is identity: nothing located, or the container would not be smaller.
    if let Some(encoded) = codec.encode(method, direction, msg).unwrap() {
        let located = locator.locate(method, direction, msg).len();
        assert_eq!(encoded.tensors.len(), located);
        assert_eq!(codec.decode(&encoded.bytes).unwrap(), msg);
    }
}

/// Feeds `msg` to a streaming walk in chunks of the sizes in `chunks` (cycled): each
/// feed's spans cover exactly its bytes, a tensor's spans follow each other and add up to
/// its length, the tensors are the whole-message locator's ranges, and the model is
/// `model`.
fn check_stream(
    locator: &Locator,
    method: &str,
    direction: Direction,
    msg: &[u8],
    chunks: &[usize],
    model: &ModelId,
) {
    let mut walk = locator
        .stream(method, direction, msg.len())
        .expect("a built-in protocol streams");
    let mut spans = Vec::new();
    let mut pos = 0;
    for &size in chunks.iter().cycle() {
        if pos == msg.len() {
            break;
        }
        let n = size.clamp(1, msg.len() - pos);
        let before = spans.len();
        walk.feed(&msg[pos..pos + n], &mut spans);
        assert_eq!(spans[before..].iter().map(Span::len).sum::<usize>(), n);
        pos += n;
    }
    // (offset, len, elem_size, name, dtype) of each tensor, its bytes counted as they come.
    let mut got = Vec::new();
    let mut offset = 0;
    let mut due = 0;
    for span in &spans {
        match span {
            Span::Plain(_) => assert_eq!(due, 0, "plain bytes inside a tensor"),
            Span::Tensor {
                len,
                start: Some(s),
            } => {
                assert_eq!(due, 0, "a tensor inside a tensor");
                due = s.len - len;
                got.push((offset, s.len, s.elem_size, s.name.clone(), s.dtype));
            }
            Span::Tensor { len, start: None } => due -= len,
        }
        assert!(!span.is_empty());
        offset += span.len();
    }
    assert_eq!((offset, due), (msg.len(), 0));
    let want: Vec<_> = locator
        .locate(method, direction, msg)
        .iter()
        .map(|r| (r.offset, r.len, r.elem_size, r.name.to_owned(), r.dtype))
        .collect();
    assert_eq!(got, want, "{method} in chunks {chunks:?}");
    assert!(walk.is_done() && !walk.is_malformed());
    assert_eq!(walk.model(), Some(model));
    assert_eq!(locator.model(method, direction, msg).as_ref(), Some(model));
}

/// Chunk sizes: single bytes, the whole message at once, or a few random sizes.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1]),
        1 => Just(vec![usize::MAX]),
        3 => prop::collection::vec(1usize..300, 1..5),
    ]
}

/// A KServe model name and version (empty ones too: the message then omits them).
fn kserve_model() -> impl Strategy<Value = ModelId> {
    ("[a-z_]{0,10}", "[0-9]{0,3}").prop_map(|(name, version)| ModelId {
        name,
        version,
        signature: String::new(),
    })
}

fn f32_of(b: &[u8]) -> f32 {
    f32::from_le_bytes(b.try_into().unwrap())
}
fn f64_of(b: &[u8]) -> f64 {
    f64::from_le_bytes(b.try_into().unwrap())
}
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The packed encoding of varints, as protobuf writes `repeated int32/int64/...`.
fn varints(values: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for mut v in values {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

// ---------- strategies ----------

fn shape() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(0i64..12, 0..4)
}

/// A tensor of `dtype`: `prod(shape) * elem_size` bytes plus `extra` trailing bytes
/// (0 to elem_size - 1, so that sizes are not always a multiple of the element size),
/// random or smooth (compressible) content.
fn tensor(dtypes: &'static [DType], allow_extra: bool) -> impl Strategy<Value = Tensor> {
    (
        prop::sample::select(dtypes),
        shape(),
        0usize..8,
        prop::bool::weighted(0.75),
        any::<u64>(),
        "[a-z]{1,6}",
    )
        .prop_map(move |(dtype, shape, extra, smooth, seed, name)| {
            let elems: i64 = shape.iter().product();
            let extra = if allow_extra {
                extra % dtype.elem_size().max(1)
            } else {
                0
            };
            let len = elems as usize * dtype.elem_size() + extra;
            let mut state = seed | 1;
            let data = (0..len)
                .map(|i| {
                    if smooth {
                        (i / 7) as u8
                    } else {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    }
                })
                .collect();
            Tensor {
                name,
                dtype,
                shape,
                data,
            }
        })
}

fn options() -> impl Strategy<Value = CompressOptions> {
    (
        prop::sample::select(&Codec::ALL[..]),
        0u8..=9,
        prop::sample::select(&Shuffle::ALL[..]),
    )
        .prop_map(|(codec, level, shuffle)| CompressOptions::new(codec, level, shuffle).unwrap())
}

const KSERVE_DTYPES: &[DType] = &[
    DType::Bool,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::F16,
    DType::BF16,
    DType::F32,
    DType::F64,
    DType::Bytes,
];

// ---------- KServe ----------

/// How an input or output carries its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Raw,
    Typed,
    SharedMemory,
}

fn carrier() -> impl Strategy<Value = Carrier> {
    prop_oneof![
        3 => Just(Carrier::Raw),
        2 => Just(Carrier::Typed),
        1 => Just(Carrier::SharedMemory),
    ]
}

/// Typed `InferTensorContents` for `t`, and what the locator should report for it.
/// Types without a typed form (FP16, BF16) give `None`.
fn typed_contents(t: &Tensor, flipped: bool) -> Option<(InferTensorContents, Vec<Expected>)> {
    let mut c = InferTensorContents::default();
    let mut exp = Vec::new();
    // Varint values change length when flipped: only fixed-width payloads are flipped.
    let flipped = flipped && matches!(t.dtype, DType::F32 | DType::F64 | DType::Bytes);
    let d = t.data(flipped);
    match t.dtype {
        DType::Bool => {
            c.bool_contents = d.iter().map(|b| b & 1 == 1).collect();
            exp.extend(expected(
                t,
                1,
                varints(c.bool_contents.iter().map(|&b| u64::from(b))),
                false,
            ));
        }
        DType::I8 | DType::I16 | DType::I32 => {
            let size = t.dtype.elem_size();
            c.int_contents = d
                .chunks_exact(size)
                .map(|b| match size {
                    1 => i32::from(b[0] as i8),
                    2 => i32::from(i16::from_le_bytes([b[0], b[1]])),
                    _ => i32::from_le_bytes(b.try_into().unwrap()),
                })
                .collect();
            // int32 varints sign-extend negative values to 64 bits.
            let enc = varints(c.int_contents.iter().map(|&v| i64::from(v) as u64));
            exp.extend(expected(t, 1, enc, false));
        }
        DType::I64 => {
            c.int64_contents = t.values(flipped, 8, |b| i64::from_le_bytes(b.try_into().unwrap()));
            exp.extend(expected(
                t,
                1,
                varints(c.int64_contents.iter().map(|&v| v as u64)),
                false,
            ));
        }
        DType::U8 | DType::U16 | DType::U32 => {
            let size = t.dtype.elem_size();
            c.uint_contents = d
                .chunks_exact(size)
                .map(|b| {
                    let mut w = [0u8; 4];
                    w[..size].copy_from_slice(b);
                    u32::from_le_bytes(w)
                })
                .collect();
            exp.extend(expected(
                t,
                1,
                varints(c.uint_contents.iter().map(|&v| u64::from(v))),
                false,
            ));
        }
        DType::U64 => {
            c.uint64_contents = t.values(flipped, 8, |b| u64::from_le_bytes(b.try_into().unwrap()));
            exp.extend(expected(
                t,
                1,
                varints(c.uint64_contents.iter().copied()),
                false,
            ));
        }
        DType::F32 => {
            c.fp32_contents = t.values(flipped, 4, f32_of);
            exp.extend(expected(t, 4, f32_bytes(&t.values(false, 4, f32_of)), true));
        }
        DType::F64 => {
            c.fp64_contents = t.values(flipped, 8, f64_of);
            exp.extend(expected(t, 8, f64_bytes(&t.values(false, 8, f64_of)), true));
        }
        DType::Bytes => {
            // Elements of 0 to 4 bytes cut from the data.
            let chunks: Vec<Vec<u8>> = d.chunks(5).map(|c| c[..c.len() - 1].to_vec()).collect();
            let plain: Vec<Vec<u8>> = t
                .data
                .chunks(5)
                .map(|c| c[..c.len() - 1].to_vec())
                .collect();
            c.bytes_contents = chunks;
            exp.extend(plain.into_iter().filter_map(|b| expected(t, 1, b, true)));
        }
        _ => return None,
    }
    Some((c, exp))
}

fn shm_parameters() -> BTreeMap<String, InferParameter> {
    let param = |s: &str| InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(s.into())),
    };
    BTreeMap::from([
        ("shared_memory_region".to_owned(), param("region0")),
        (
            "shared_memory_byte_size".to_owned(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(64)),
            },
        ),
    ])
}

fn kserve_request(
    inputs: &[(Tensor, Carrier)],
    flipped: bool,
) -> (ModelInferRequest, Vec<Expected>) {
    let mut req = ModelInferRequest {
        model_name: "model".into(),
        id: "req-1".into(),
        ..Default::default()
    };
    let mut typed_exp = Vec::new();
    let mut raw_exp = Vec::new();
    for (t, carrier) in inputs {
        let mut input = InferInputTensor {
            name: t.name.clone(),
            datatype: t.dtype.kserve_name().unwrap().into(),
            shape: t.shape.clone(),
            ..Default::default()
        };
        match (carrier, typed_contents(t, flipped)) {
            (Carrier::Typed, Some((contents, exp))) => {
                input.contents = Some(contents);
                typed_exp.extend(exp);
            }
            (Carrier::SharedMemory, _) => input.parameters = shm_parameters(),
            _ => {
                req.raw_input_contents.push(t.data(flipped));
                raw_exp.extend(expected(t, t.dtype.elem_size(), t.data.clone(), true));
            }
        }
        req.inputs.push(input);
    }
    typed_exp.extend(raw_exp);
    (req, typed_exp)
}

fn kserve_response(
    outputs: &[(Tensor, Carrier)],
    flipped: bool,
) -> (ModelInferResponse, Vec<Expected>) {
    let mut resp = ModelInferResponse {
        model_name: "model".into(),
        model_version: "1".into(),
        ..Default::default()
    };
    let mut typed_exp = Vec::new();
    let mut raw_exp = Vec::new();
    for (t, carrier) in outputs {
        let mut output = InferOutputTensor {
            name: t.name.clone(),
            datatype: t.dtype.kserve_name().unwrap().into(),
            shape: t.shape.clone(),
            ..Default::default()
        };
        // Outputs match raw entries by position: one without raw data has an empty entry.
        match (carrier, typed_contents(t, flipped)) {
            (Carrier::Typed, Some((contents, exp))) => {
                output.contents = Some(contents);
                typed_exp.extend(exp);
                resp.raw_output_contents.push(Vec::new());
            }
            (Carrier::SharedMemory, _) => {
                output.parameters = shm_parameters();
                resp.raw_output_contents.push(Vec::new());
            }
            _ => {
                resp.raw_output_contents.push(t.data(flipped));
                raw_exp.extend(expected(t, t.dtype.elem_size(), t.data.clone(), true));
            }
        }
        resp.outputs.push(output);
    }
    typed_exp.extend(raw_exp);
    (resp, typed_exp)
}

fn kserve_tensors() -> impl Strategy<Value = Vec<(Tensor, Carrier)>> {
    prop::collection::vec((tensor(KSERVE_DTYPES, true), carrier()), 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn kserve_request_ranges(
        inputs in kserve_tensors(),
        opts in options(),
        chunks in chunking(),
        model in kserve_model(),
    ) {
        let name = |mut req: ModelInferRequest| {
            req.model_name = model.name.clone();
            req.model_version = model.version.clone();
            req
        };
        let (req, exp) = kserve_request(&inputs, false);
        let (flipped, _) = kserve_request(&inputs, true);
        let msg = name(req).encode_to_vec();
        let flipped = name(flipped).encode_to_vec();
        let locator = Locator::default();
        for method in [KSERVE_MODEL_INFER, KSERVE_MODEL_STREAM_INFER] {
            let ranges = locator.locate(method, Direction::Request, &msg);
            check_ranges(&msg, &flipped, &ranges, &exp);
            check_round_trip(&locator, method, Direction::Request, &msg, opts);
            check_stream(&locator, method, Direction::Request, &msg, &chunks, &model);
        }
    }

    #[test]
    fn kserve_response_ranges(
        outputs in kserve_tensors(),
        opts in options(),
        chunks in chunking(),
        model in kserve_model(),
        error_message in "[a-z ]{0,8}",
    ) {
        let name = |mut resp: ModelInferResponse| {
            resp.model_name = model.name.clone();
            resp.model_version = model.version.clone();
            resp
        };
        let (resp, exp) = kserve_response(&outputs, false);
        let (flipped, _) = kserve_response(&outputs, true);
        let (resp, flipped) = (name(resp), name(flipped));
        let msg = resp.encode_to_vec();
        let locator = Locator::default();
        let ranges = locator.locate(KSERVE_MODEL_INFER, Direction::Response, &msg);
        check_ranges(&msg, &flipped.encode_to_vec(), &ranges, &exp);
        check_round_trip(&locator, KSERVE_MODEL_INFER, Direction::Response, &msg, opts);
        check_stream(&locator, KSERVE_MODEL_INFER, Direction::Response, &msg, &chunks, &model);

        let stream = |resp| ModelStreamInferResponse {
            error_message: error_message.clone(),
            infer_response: Some(resp),
        };
        let msg = stream(resp).encode_to_vec();
        let ranges = locator.locate(KSERVE_MODEL_STREAM_INFER, Direction::Response, &msg);
        check_ranges(&msg, &stream(flipped).encode_to_vec(), &ranges, &exp);
        check_round_trip(&locator, KSERVE_MODEL_STREAM_INFER, Direction::Response, &msg, opts);
        check_stream(&locator, KSERVE_MODEL_STREAM_INFER, Direction::Response, &msg, &chunks, &model);
    }
}

// ---------- TF Serving ----------

/// A `TensorProto` for `t`: `tensor_content` when `raw`, else the typed `*_val` field
/// `tf.make_tensor_proto` would not use but hand-built protos do.
fn tensor_proto(t: &Tensor, raw: bool, flipped: bool) -> (TensorProto, Vec<Expected>) {
    let mut p = TensorProto {
        dtype: t.dtype.tf_value() as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: t
                .shape
                .iter()
                .map(|&size| Dim {
                    size,
                    name: String::new(),
                })
                .collect(),
            unknown_rank: false,
        }),
        ..Default::default()
    };
    // Varint values change length when flipped: only fixed-width payloads are flipped.
    let fixed_width = matches!(
        t.dtype,
        DType::F32
            | DType::F64
            | DType::Complex64
            | DType::Complex128
            | DType::F8E5M2
            | DType::F8E4M3Fn
            | DType::Bytes
    );
    let flipped = flipped && (raw || fixed_width);
    let d = t.data(flipped);
    let mut exp = Vec::new();
    if raw && t.dtype != DType::Bytes {
        p.tensor_content = d;
        exp.extend(expected(t, t.dtype.elem_size(), t.data.clone(), true));
        return (p, exp);
    }
    let size = t.dtype.elem_size();
    match t.dtype {
        DType::F32 | DType::Complex64 => {
            let v = t.values(flipped, 4, f32_of);
            exp.extend(expected(t, 4, f32_bytes(&t.values(false, 4, f32_of)), true));
            if t.dtype == DType::F32 {
                p.float_val = v
            } else {
                p.scomplex_val = v
            }
        }
        DType::F64 | DType::Complex128 => {
            let v = t.values(flipped, 8, f64_of);
            exp.extend(expected(t, 8, f64_bytes(&t.values(false, 8, f64_of)), true));
            if t.dtype == DType::F64 {
                p.double_val = v
            } else {
                p.dcomplex_val = v
            }
        }
        DType::F16 | DType::BF16 => {
            p.half_val = d
                .chunks_exact(2)
                .map(|b| i32::from(u16::from_le_bytes([b[0], b[1]])))
                .collect();
            exp.extend(expected(
                t,
                1,
                varints(p.half_val.iter().map(|&v| v as u64)),
                false,
            ));
        }
        DType::Bool => {
            p.bool_val = d.iter().map(|b| b & 1 == 1).collect();
            exp.extend(expected(
                t,
                1,
                varints(p.bool_val.iter().map(|&b| u64::from(b))),
                false,
            ));
        }
        DType::I8 | DType::I16 | DType::I32 | DType::U8 | DType::U16 => {
            p.int_val = d
                .chunks_exact(size)
                .map(|b| match t.dtype {
                    DType::I8 => i32::from(b[0] as i8),
                    DType::U8 => i32::from(b[0]),
                    DType::I16 => i32::from(i16::from_le_bytes([b[0], b[1]])),
                    DType::U16 => i32::from(u16::from_le_bytes([b[0], b[1]])),
                    _ => i32::from_le_bytes(b.try_into().unwrap()),
                })
                .collect();
            exp.extend(expected(
                t,
                1,
                varints(p.int_val.iter().map(|&v| i64::from(v) as u64)),
                false,
            ));
        }
        DType::I64 => {
            p.int64_val = t.values(flipped, 8, |b| i64::from_le_bytes(b.try_into().unwrap()));
            exp.extend(expected(
                t,
                1,
                varints(p.int64_val.iter().map(|&v| v as u64)),
                false,
            ));
        }
        DType::U32 => {
            p.uint32_val = t.values(flipped, 4, |b| u32::from_le_bytes(b.try_into().unwrap()));
            exp.extend(expected(
                t,
                1,
                varints(p.uint32_val.iter().map(|&v| u64::from(v))),
                false,
            ));
        }
        DType::U64 => {
            p.uint64_val = t.values(flipped, 8, |b| u64::from_le_bytes(b.try_into().unwrap()));
            exp.extend(expected(t, 1, varints(p.uint64_val.iter().copied()), false));
        }
        DType::F8E5M2 | DType::F8E4M3Fn => {
            p.float8_val = d;
            exp.extend(expected(t, 1, t.data.clone(), true));
        }
        DType::Bytes => {
            p.string_val = d.chunks(5).map(|c| c[..c.len() - 1].to_vec()).collect();
            let plain = t.data.chunks(5).map(|c| c[..c.len() - 1].to_vec());
            exp.extend(plain.filter_map(|b| expected(t, 1, b, true)));
        }
    }
    (p, exp)
}

/// Map entries keyed by tensor name (unique names: later duplicates are dropped).
fn tf_map(
    tensors: &[(Tensor, bool)],
    flipped: bool,
) -> (BTreeMap<String, TensorProto>, Vec<Expected>) {
    let mut map = BTreeMap::new();
    let mut exp = BTreeMap::new();
    for (t, raw) in tensors {
        if map.contains_key(&t.name) {
            continue;
        }
        let (p, e) = tensor_proto(t, *raw, flipped);
        map.insert(t.name.clone(), p);
        exp.insert(t.name.clone(), e);
    }
    (map, exp.into_values().flatten().collect())
}

fn tf_tensors() -> impl Strategy<Value = Vec<(Tensor, bool)>> {
    // Typed fields hold whole elements only; raw content may have a partial one.
    prop::collection::vec(
        any::<bool>().prop_flat_map(|raw| (tensor(&DType::ALL, raw), Just(raw))),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn tf_serving_ranges(
        tensors in tf_tensors(),
        opts in options(),
        chunks in chunking(),
        (name, signature) in ("[a-z]{0,8}", "[a-z_]{0,16}"),
        version in prop::option::of(prop_oneof![
            any::<i64>().prop_map(|value| VersionChoice::Version(Int64Value { value })),
            "[a-z0-9]{0,6}".prop_map(VersionChoice::VersionLabel),
        ]),
    ) {
        let locator = Locator::default();
        let (inputs, exp) = tf_map(&tensors, false);
        let (flipped_inputs, _) = tf_map(&tensors, true);
        let spec = bloscar::pb::tensorflow::serving::ModelSpec {
            name: name.clone(),
            signature_name: signature.clone(),
            version_choice: version.clone(),
        };
        let model = ModelId {
            name,
            version: match version {
                Some(VersionChoice::Version(v)) => v.value.to_string(),
                Some(VersionChoice::VersionLabel(label)) => label,
                None => String::new(),
            },
            signature,
        };
        let req = |inputs| PredictRequest {
            model_spec: Some(spec.clone()),
            inputs,
            output_filter: vec!["out".into()],
        };
        let msg = req(inputs.clone()).encode_to_vec();
        let ranges = locator.locate(TF_SERVING_PREDICT, Direction::Request, &msg);
        check_ranges(&msg, &req(flipped_inputs.clone()).encode_to_vec(), &ranges, &exp);
        check_round_trip(&locator, TF_SERVING_PREDICT, Direction::Request, &msg, opts);
        check_stream(&locator, TF_SERVING_PREDICT, Direction::Request, &msg, &chunks, &model);

        let resp = |outputs| PredictResponse { outputs, model_spec: Some(spec.clone()) };
        let msg = resp(inputs).encode_to_vec();
        let ranges = locator.locate(TF_SERVING_PREDICT, Direction::Response, &msg);
        check_ranges(&msg, &resp(flipped_inputs).encode_to_vec(), &ranges, &exp);
        check_round_trip(&locator, TF_SERVING_PREDICT, Direction::Response, &msg, opts);
        check_stream(&locator, TF_SERVING_PREDICT, Direction::Response, &msg, &chunks, &model);
    }
}

// ---------- tagged ndarrays ----------

const DENOISE: &str = "/example.imaging.v1.Imaging/Denoise";

fn ndarray(t: &Tensor, flipped: bool) -> NdArray {
    NdArray {
        dtype: t.dtype.bloscar_value() as i32,
        shape: t.shape.clone(),
        data: t.data(flipped),
    }
}

fn tagged_locator(tf_enum: bool) -> Locator {
    let band_dtype = if tf_enum { "4/tf" } else { "2" };
    let rules = format!(
        "{DENOISE}=2; {DENOISE}@request=3.3:dtype={band_dtype}:name=1; \
         {DENOISE}@request=4.2; {DENOISE}@response=5:dtype=float32"
    );
    Locator::new(TaggedRule::parse_list(&rules).unwrap())
}

fn denoise_request(
    image: &Option<Tensor>,
    bands: &[Tensor],
    extras: &[Tensor],
    flipped: bool,
) -> (DenoiseRequest, Vec<Expected>) {
    let mut exp = Vec::new();
    let unnamed = |t: &Tensor| Tensor {
        name: String::new(),
        ..t.clone()
    };
    if let Some(t) = image {
        exp.extend(expected(
            &unnamed(t),
            t.dtype.elem_size(),
            t.data.clone(),
            true,
        ));
    }
    for t in bands {
        exp.extend(expected(t, t.dtype.elem_size(), t.data.clone(), true));
    }
    let mut map = BTreeMap::new();
    let mut map_exp = BTreeMap::new();
    for t in extras {
        map.insert(t.name.clone(), ndarray(t, flipped));
        map_exp.insert(
            t.name.clone(),
            expected(&unnamed(t), t.dtype.elem_size(), t.data.clone(), true),
        );
    }
    exp.extend(map_exp.into_values().flatten());
    let req = DenoiseRequest {
        request_id: "r".into(),
        image: image.as_ref().map(|t| ndarray(t, flipped)),
        bands: bands
            .iter()
            .map(|t| Band {
                name: t.name.clone(),
                dtype: t.dtype.kserve_name().unwrap_or(t.dtype.name()).into(),
                data: t.data(flipped),
                tf_dtype: t.dtype.tf_value() as i32,
            })
            .collect(),
        extras: map,
    };
    (req, exp)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn tagged_ranges(
        image in prop::option::of(tensor(&DType::ALL, true)),
        bands in prop::collection::vec(tensor(&DType::ALL, true), 0..4),
        extras in prop::collection::vec(tensor(&DType::ALL, true), 0..3),
        scores in prop::collection::vec(any::<f32>(), 0..64),
        tf_enum in any::<bool>(),
        opts in options(),
    ) {
        let locator = tagged_locator(tf_enum);
        let (req, exp) = denoise_request(&image, &bands, &extras, false);
        let (flipped, _) = denoise_request(&image, &bands, &extras, true);
        let msg = req.encode_to_vec();
        let ranges = locator.locate(DENOISE, Direction::Request, &msg);
        check_ranges(&msg, &flipped.encode_to_vec(), &ranges, &exp);
        check_round_trip(&locator, DENOISE, Direction::Request, &msg, opts);

        let resp = |flip: bool| DenoiseResponse {
            request_id: "r".into(),
            image: image.as_ref().map(|t| ndarray(t, flip)),
            scores: scores.iter().map(|s| if flip { f32::from_bits(!s.to_bits()) } else { *s }).collect(),
        };
        let mut exp = Vec::new();
        if let Some(t) = &image {
            exp.extend(expected(&Tensor { name: String::new(), ..t.clone() }, t.dtype.elem_size(), t.data.clone(), true));
        }
        let score_tensor = Tensor { name: String::new(), dtype: DType::F32, shape: vec![], data: f32_bytes(&scores) };
        exp.extend(expected(&score_tensor, 4, score_tensor.data.clone(), true));
        let msg = resp(false).encode_to_vec();
        let ranges = locator.locate(DENOISE, Direction::Response, &msg);
        check_ranges(&msg, &resp(true).encode_to_vec(), &ranges, &exp);
        check_round_trip(&locator, DENOISE, Direction::Response, &msg, opts);
    }
}

// ---------- malformed input ----------

fn all_locators() -> Locator {
    let rules = format!(
        "{DENOISE}=2;{DENOISE}@request=3.3:dtype=2:name=1;{DENOISE}@request=4.2;\
         /x.Y/Z=1.2.3:dtype=1.1/onnx:name=2.2"
    );
    Locator::new(TaggedRule::parse_list(&rules).unwrap())
}

const METHODS: &[&str] = &[
    KSERVE_MODEL_INFER,
    KSERVE_MODEL_STREAM_INFER,
    TF_SERVING_PREDICT,
    DENOISE,
    "/x.Y/Z",
];

/// Ranges must lie inside the message, sorted and disjoint, whatever the input.
fn check_sane(msg: &[u8], ranges: &[TensorRange<'_>]) {
    let mut end = 0;
    for r in ranges {
        assert!(r.len > 0 && r.elem_size > 0);
        assert!(r.offset >= end, "{ranges:?}");
        end = r.offset + r.len;
        assert!(end <= msg.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(msg in prop::collection::vec(any::<u8>(), 0..512)) {
        let locator = all_locators();
        for method in METHODS {
            for direction in [Direction::Request, Direction::Response] {
                check_sane(&msg, &locator.locate(method, direction, &msg));
            }
        }
    }

    #[test]
    fn corrupted_messages_never_panic(
        inputs in kserve_tensors(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (req, _) = kserve_request(&inputs, false);
        let mut msg = req.encode_to_vec();
        if !msg.is_empty() {
            for (index, byte) in flips {
                let i = index.index(msg.len());
                msg[i] ^= byte;
            }
        }
        let locator = all_locators();
        for method in METHODS {
            for direction in [Direction::Request, Direction::Response] {
                check_sane(&msg, &locator.locate(method, direction, &msg));
            }
        }
    }
}

#[test]
fn truncated_messages_give_no_ranges_past_the_end() {
    let t = Tensor {
        name: "x".into(),
        dtype: DType::F32,
        shape: vec![2, 3],
        data: (0..24).collect(),
    };
    let (req, _) = kserve_request(
        &[(t.clone(), Carrier::Raw), (t.clone(), Carrier::Typed)],
        false,
    );
    let msg = req.encode_to_vec();
    let locator = Locator::default();
    assert_eq!(
        locator
            .locate(KSERVE_MODEL_INFER, Direction::Request, &msg)
            .len(),
        2
    );
    for cut in 0..msg.len() {
        let ranges = locator.locate(KSERVE_MODEL_INFER, Direction::Request, &msg[..cut]);
        check_sane(&msg[..cut], &ranges);
    }
    // Cutting inside the last field makes the message unparseable: nothing is located.
    let cut = &msg[..msg.len() - 1];
    assert!(
        locator
            .locate(KSERVE_MODEL_INFER, Direction::Request, cut)
            .is_empty()
    );
}

/// Every codec and shuffle mode compresses a large smooth tensor in each protocol and
/// restores the message exactly.
#[test]
fn every_setting_round_trips_a_large_tensor() {
    let data: Vec<u8> = (0..65536u32)
        .flat_map(|i| ((i / 64) as f32).to_le_bytes())
        .collect();
    let t = Tensor {
        name: "image".into(),
        dtype: DType::F32,
        shape: vec![256, 256],
        data,
    };
    let kserve = kserve_request(&[(t.clone(), Carrier::Raw)], false).0;
    let tf = PredictRequest {
        inputs: tf_map(&[(t.clone(), true)], false).0,
        ..Default::default()
    };
    let tagged = denoise_request(&Some(t.clone()), &[], &[], false).0;
    let cases = [
        (
            Locator::default(),
            KSERVE_MODEL_INFER,
            kserve.encode_to_vec(),
        ),
        (Locator::default(), TF_SERVING_PREDICT, tf.encode_to_vec()),
        (tagged_locator(false), DENOISE, tagged.encode_to_vec()),
    ];
    for (locator, method, msg) in cases {
        for codec in Codec::ALL {
            for shuffle in Shuffle::ALL {
                let opts = CompressOptions::new(codec, 5, shuffle).unwrap();
                let chooser = FixedChooser {
                    options: opts,
                    min_size: 0,
                };
                let mc = MessageCodec::new(locator.clone(), Arc::new(chooser), Limits::default());
                let encoded = mc
                    .encode(method, Direction::Request, &msg)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{method} {codec:?}/{shuffle:?}: not compressed"));
                assert_eq!(encoded.tensors.len(), 1);
                assert!(
                    encoded.bytes.len() < msg.len() / 4,
                    "{method} {codec:?}/{shuffle:?}"
                );
                assert_eq!(
                    mc.decode(&encoded.bytes).unwrap(),
                    msg,
                    "{method} {codec:?}/{shuffle:?}"
                );
            }
        }
    }
}

/// A rule can describe TF Serving's `tensor_content` by configuration alone: the dtype
/// from a sibling TF enum field, the name from a field nested in a sibling message (the
/// last dimension's name). It then finds what the built-in locator finds.
#[test]
fn rules_reproduce_the_built_in_tf_locator() {
    let tensors: Vec<(Tensor, bool)> = DType::ALL
        .iter()
        .filter(|d| **d != DType::Bytes)
        .enumerate()
        .map(|(i, &dtype)| {
            let t = Tensor {
                name: format!("t{i}"),
                dtype,
                shape: vec![3, i as i64 + 1],
                data: (0..3 * (i + 1) * dtype.elem_size())
                    .map(|b| b as u8)
                    .collect(),
            };
            (t, true)
        })
        .collect();
    let (mut inputs, _) = tf_map(&tensors, false);
    for (name, proto) in inputs.iter_mut() {
        if let Some(shape) = proto.tensor_shape.as_mut() {
            shape.dim.last_mut().unwrap().name = name.clone();
        }
    }
    let msg = PredictRequest {
        inputs,
        ..Default::default()
    }
    .encode_to_vec();
    let built_in = Locator::default().locate(TF_SERVING_PREDICT, Direction::Request, &msg);
    assert_eq!(built_in.len(), tensors.len());
    let rules = TaggedRule::parse_list("/x.Y/Z@request=2.2.4:dtype=1/tf:name=2.2.2").unwrap();
    let by_rule = Locator::new(rules).locate("/x.Y/Z", Direction::Request, &msg);
    assert_eq!(by_rule, built_in);
    assert!(by_rule.iter().all(|r| r.name.starts_with('t')));
}
