//! The streaming walk on arbitrary bytes in arbitrary chunkings (the first byte picks
//! the chunk sizes, the rest is the message), as a message of every built-in protocol:
//! every feed's spans cover exactly its bytes, tensors lie inside the message, and
//! chunking changes nothing. The message decoded and re-encoded by prost (a well-formed
//! message in the serializer's field order) streams to exactly the whole-message
//! locator's ranges, and to the model it names.
#![no_main]

use bloscar::locate::{
    Direction, KSERVE_MODEL_INFER, KSERVE_MODEL_STREAM_INFER, Locator, ModelId, Span,
    TF_SERVING_PREDICT, TensorStart,
};
use bloscar::pb::inference::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use bloscar::pb::tensorflow::serving::model_spec::VersionChoice;
use bloscar::pb::tensorflow::serving::{ModelSpec, PredictRequest, PredictResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const METHODS: [&str; 3] = [
    KSERVE_MODEL_INFER,
    KSERVE_MODEL_STREAM_INFER,
    TF_SERVING_PREDICT,
];

/// Chunk sizes from a seed byte: single bytes, the whole message, or pseudo-random sizes
/// up to 7, 64 or 1024 bytes.
struct Chunks {
    max: usize,
    state: u32,
}

impl Chunks {
    fn new(seed: u8) -> Self {
        let max = [1, usize::MAX, 7, 64, 1024][usize::from(seed % 5)];
        Chunks {
            max,
            state: u32::from(seed).wrapping_mul(2654435761) | 1,
        }
    }

    fn next(&mut self) -> usize {
        if self.max <= 1 || self.max == usize::MAX {
            return self.max;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + self.state as usize % self.max
    }
}

/// (offset, start) of each tensor the walk reports, after the checks on its spans.
type Located = Vec<(usize, TensorStart)>;

/// Streams `msg` in the chunks `seed` picks, checking coverage and span structure.
fn stream(
    locator: &Locator,
    method: &str,
    direction: Direction,
    msg: &[u8],
    seed: u8,
) -> (Located, Option<ModelId>, bool) {
    let mut walk = locator
        .stream(method, direction, msg.len())
        .expect("built-in protocols stream");
    let mut chunks = Chunks::new(seed);
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let n = chunks.next().clamp(1, msg.len() - pos);
        let before = spans.len();
        walk.feed(&msg[pos..pos + n], &mut spans);
        assert_eq!(spans[before..].iter().map(Span::len).sum::<usize>(), n);
        pos += n;
    }
    assert!(walk.is_done());
    let mut located = Vec::new();
    let (mut offset, mut due) = (0, 0);
    for span in spans {
        assert!(!span.is_empty());
        let len = span.len();
        match span {
            Span::Plain(_) => assert_eq!(due, 0),
            Span::Tensor {
                start: Some(start), ..
            } => {
                assert_eq!(due, 0);
                assert!(start.len >= len && start.elem_size > 0);
                assert!(offset + start.len <= msg.len());
                due = start.len - len;
                located.push((offset, start));
            }
            Span::Tensor { start: None, .. } => {
                assert!(len <= due);
                due -= len;
            }
        }
        offset += len;
    }
    assert_eq!(offset, msg.len());
    (located, walk.model().cloned(), walk.is_malformed())
}

fn whole(locator: &Locator, method: &str, direction: Direction, msg: &[u8]) -> Located {
    locator
        .locate(method, direction, msg)
        .iter()
        .map(|r| {
            let start = TensorStart {
                len: r.len,
                elem_size: r.elem_size,
                name: r.name.to_owned(),
                dtype: r.dtype,
            };
            (r.offset, start)
        })
        .collect()
}

fn kserve_model(name: &str, version: &str) -> ModelId {
    ModelId {
        name: name.to_owned(),
        version: version.to_owned(),
        signature: String::new(),
    }
}

fn tf_model(spec: Option<&ModelSpec>) -> ModelId {
    let Some(spec) = spec else {
        return ModelId::default();
    };
    ModelId {
        name: spec.name.clone(),
        version: match &spec.version_choice {
            Some(VersionChoice::Version(v)) => v.value.to_string(),
            Some(VersionChoice::VersionLabel(label)) => label.clone(),
            None => String::new(),
        },
        signature: spec.signature_name.clone(),
    }
}

/// The message in the serializer's order, with the model it names, if prost reads it as
/// the protocol's message.
fn canonical(method: &str, direction: Direction, msg: &[u8]) -> Option<(Vec<u8>, ModelId)> {
    Some(match (method, direction) {
        (KSERVE_MODEL_INFER | KSERVE_MODEL_STREAM_INFER, Direction::Request) => {
            let m = ModelInferRequest::decode(msg).ok()?;
            (m.encode_to_vec(), kserve_model(&m.model_name, &m.model_version))
        }
        (KSERVE_MODEL_INFER, Direction::Response) => {
            let m = ModelInferResponse::decode(msg).ok()?;
            (m.encode_to_vec(), kserve_model(&m.model_name, &m.model_version))
        }
        (KSERVE_MODEL_STREAM_INFER, Direction::Response) => {
            let m = ModelStreamInferResponse::decode(msg).ok()?;
            let model = m
                .infer_response
                .as_ref()
                .map(|r| kserve_model(&r.model_name, &r.model_version))
                .unwrap_or_default();
            (m.encode_to_vec(), model)
        }
        (_, Direction::Request) => {
            let m = PredictRequest::decode(msg).ok()?;
            (m.encode_to_vec(), tf_model(m.model_spec.as_ref()))
        }
        (_, Direction::Response) => {
            let m = PredictResponse::decode(msg).ok()?;
            (m.encode_to_vec(), tf_model(m.model_spec.as_ref()))
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, msg)) = data.split_first() else {
        return;
    };
    let locator = Locator::default();
    for method in METHODS {
        for direction in [Direction::Request, Direction::Response] {
            // Chunking changes nothing, whatever the bytes.
            let at_once = stream(&locator, method, direction, msg, 1);
            assert_eq!(stream(&locator, method, direction, msg, seed), at_once);

            if let Some((msg, model)) = canonical(method, direction, msg) {
                let (located, found, malformed) = stream(&locator, method, direction, &msg, seed);
                assert!(!malformed);
                assert_eq!(located, whole(&locator, method, direction, &msg));
                assert_eq!(found, Some(model));
            }
        }
    }
});
