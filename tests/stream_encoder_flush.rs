//! The streaming encoder handing out what it holds back at any moment (as a stream does
//! before it waits for memory): whatever the message, the pieces and the moments, the
//! records restore it exactly, and at most one element's bytes stay behind.

use std::sync::Arc;

use bloscar::container::stream::{Record, StreamDecoder};
use bloscar::locate::{Direction, KSERVE_MODEL_INFER, Locator};
use bloscar::pb::inference::ModelInferRequest;
use bloscar::pb::inference::model_infer_request::InferInputTensor;
use bloscar::stream_encoder::{EncoderContext, Out, StreamEncoder};
use bloscar::{FixedChooser, Limits};
use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

/// Element types and their widths.
const TYPES: [(&str, usize); 3] = [("INT8", 1), ("FP32", 4), ("FP64", 8)];

/// A KServe request with one raw input per (type, elements, smooth) entry.
fn request(inputs: &[(usize, usize, bool)]) -> Vec<u8> {
    let mut message = ModelInferRequest {
        model_name: "m".into(),
        ..Default::default()
    };
    for (i, &(kind, elements, smooth)) in inputs.iter().enumerate() {
        let (datatype, width) = TYPES[kind];
        let data: Vec<u8> = (0..elements * width)
            .map(|b| {
                if smooth {
                    (b / (width * 16)) as u8
                } else {
                    (b.wrapping_mul(2_654_435_761) >> 7) as u8
                }
            })
            .collect();
        message.inputs.push(InferInputTensor {
            name: format!("in{i}"),
            datatype: datatype.into(),
            shape: vec![elements as i64],
            ..Default::default()
        });
        message.raw_input_contents.push(data);
    }
    message.encode_to_vec()
}

fn context(chunk_len: usize) -> EncoderContext {
    EncoderContext {
        chooser: Arc::new(FixedChooser {
            options: "lz4:5:byte".parse().unwrap(),
            min_size: 0,
        }),
        method: Arc::from(KSERVE_MODEL_INFER),
        model: Default::default(),
        link_bytes_per_sec: None,
        chunk_len,
        costs: None,
    }
}

/// The message the encoder's output restores: identity bytes, or a run of records.
fn restore(outs: Vec<Out>) -> Vec<u8> {
    let mut identity: Option<Vec<u8>> = None;
    let mut records: Vec<Bytes> = Vec::new();
    for out in outs {
        match out {
            Out::IdentityStart(len) => identity = Some(Vec::with_capacity(len)),
            Out::Raw(bytes) => identity.as_mut().unwrap().extend_from_slice(&bytes),
            Out::Record(parts) => records.push(parts.concat().into()),
            Out::Compress(job) => records.push(job.run()),
            Out::End(_) => {}
        }
    }
    if let Some(identity) = identity {
        assert!(records.is_empty(), "identity and records mixed");
        return identity;
    }
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut message = Vec::new();
    for record in records {
        match decoder.push(record).unwrap() {
            Record::Start { .. } => {}
            Record::Plain(bytes) => message.extend_from_slice(&bytes),
            Record::Blosc(job) => message.extend_from_slice(&job.run().unwrap()),
            Record::Whole(_) => panic!("a whole container in a run"),
        }
    }
    decoder.finish().unwrap();
    message
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn flushing_anywhere_restores_the_message(
        inputs in prop::collection::vec((0..TYPES.len(), 0usize..700, any::<bool>()), 0..4),
        pieces in prop::collection::vec((1usize..900, any::<bool>()), 1..40),
        chunk_len in prop::sample::select(vec![8usize, 64, 1000, 4096]),
    ) {
        let message = request(&inputs);
        let walk = Locator::default()
            .stream(KSERVE_MODEL_INFER, Direction::Request, message.len())
            .unwrap();
        let mut encoder = StreamEncoder::streaming(context(chunk_len), message.len(), walk);
        let mut outs = Vec::new();
        let mut at = 0;
        let mut cuts = pieces.iter().cycle();
        while at < message.len() {
            let &(len, flush) = cuts.next().unwrap();
            let end = (at + len).min(message.len());
            encoder.feed(Bytes::copy_from_slice(&message[at..end]), &mut outs);
            at = end;
            if flush && at < message.len() {
                encoder.flush(&mut outs);
                // Only a part of one element (8 bytes at most) may stay behind.
                prop_assert!(encoder.held_len() < 8, "held {}", encoder.held_len());
            }
        }
        if message.is_empty() {
            encoder.feed(Bytes::new(), &mut outs);
        }
        prop_assert!(matches!(outs.last(), Some(Out::End(_))));
        prop_assert_eq!(encoder.held_len(), 0);
        prop_assert_eq!(restore(outs), message);
    }
}
