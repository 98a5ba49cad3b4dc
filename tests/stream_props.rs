//! Bit-exactness of the streamed container: any message, cut into any sequence of plain
//! and Blosc segments (every codec, shuffle, level, typesizes 1 to 16), is restored
//! exactly by `StreamDecoder`, alone or among other messages on the same stream.

use bloscar::codec::{Codec, CompressOptions, Shuffle};
use bloscar::container::stream::{Record, SegmentSpec, StreamDecoder, encode_run};
use bloscar::container::{self, Limits, PatchSpec};
use bytes::Bytes;
use proptest::prelude::*;

fn options() -> impl Strategy<Value = CompressOptions> {
    (
        prop::sample::select(Codec::ALL.to_vec()),
        0u8..=9,
        prop::sample::select(Shuffle::ALL.to_vec()),
    )
        .prop_map(|(codec, level, shuffle)| CompressOptions {
            codec,
            level,
            shuffle,
        })
}

/// Random bytes, smooth numeric-looking data that compresses, or zeros.
fn data(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (0..max, any::<u32>(), 1u32..64).prop_map(|(len, seed, step)| {
            (0..len as u32)
                .map(|i| ((seed.wrapping_add(i / step)) >> (i % 4 * 8)) as u8)
                .collect()
        }),
        (0..max).prop_map(|len| vec![0u8; len]),
        prop::sample::select(vec![vec![], vec![0x2a]]),
    ]
}

/// How to send each piece: `None` plain, else Blosc with a typesize and a setting.
type Plan = Vec<Option<(usize, CompressOptions)>>;

fn plan() -> impl Strategy<Value = Plan> {
    prop::collection::vec(prop::option::of((1usize..=16, options())), 16)
}

/// `msg` cut at `cuts` (any positions) into segments sent as `plan` says.
fn specs(msg_len: usize, cuts: &[prop::sample::Index], plan: &Plan) -> Vec<SegmentSpec> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(msg_len + 1)).collect();
    at.extend([0, msg_len]);
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .zip(plan.iter().cycle())
        .map(|(w, how)| match *how {
            None => SegmentSpec::Plain(w[1] - w[0]),
            Some((typesize, options)) => SegmentSpec::Blosc {
                len: w[1] - w[0],
                typesize,
                options,
            },
        })
        .collect()
}

/// Every message the records on one stream restore, in order.
fn restore(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut messages = Vec::new();
    let mut current: Option<(u64, Vec<u8>)> = None;
    for record in records {
        match decoder.push(Bytes::copy_from_slice(record)).unwrap() {
            Record::Start { restored_len } => {
                assert!(current.is_none());
                current = Some((restored_len, Vec::new()));
            }
            Record::Plain(bytes) => current.as_mut().unwrap().1.extend_from_slice(&bytes),
            Record::Blosc(job) => {
                let len = job.restored_len();
                let bytes = job.run().unwrap();
                assert_eq!(bytes.len(), len);
                current.as_mut().unwrap().1.extend_from_slice(&bytes);
            }
            Record::Whole(job) => {
                assert!(current.is_none());
                let len = job.restored_len();
                let bytes = job.run().unwrap();
                assert_eq!(bytes.len(), len);
                messages.push(bytes.to_vec());
            }
        }
        if !decoder.is_open()
            && let Some((restored_len, msg)) = current.take()
        {
            assert_eq!(msg.len() as u64, restored_len);
            messages.push(msg);
        }
    }
    decoder.finish().unwrap();
    assert!(current.is_none());
    messages
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn any_segmentation_restores_the_message(
        msg in data(20_000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        plan in plan(),
    ) {
        let specs = specs(msg.len(), &cuts, &plan);
        prop_assert_eq!(specs.iter().map(SegmentSpec::len).sum::<usize>(), msg.len());
        let records = encode_run(&msg, &specs).unwrap();
        prop_assert_eq!(records.len(), specs.len() + 1);
        prop_assert_eq!(restore(&records), vec![msg]);
    }

    /// Several messages on one stream, runs and whole version-1 containers mixed.
    #[test]
    fn messages_follow_each_other_on_one_stream(
        msgs in prop::collection::vec((data(3000), any::<bool>()), 0..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        plan in plan(),
    ) {
        let mut records = Vec::new();
        for (msg, whole) in &msgs {
            if *whole {
                let patch = PatchSpec {
                    offset: 0,
                    len: msg.len(),
                    elem_size: 4,
                    options: CompressOptions::default(),
                };
                let patches = if msg.is_empty() { vec![] } else { vec![patch] };
                records.push(container::encode(msg, &patches).unwrap().bytes);
            } else {
                records.extend(encode_run(msg, &specs(msg.len(), &cuts, &plan)).unwrap());
            }
        }
        let expected: Vec<Vec<u8>> = msgs.into_iter().map(|(msg, _)| msg).collect();
        prop_assert_eq!(restore(&records), expected);
    }
}

#[test]
fn empty_message_is_the_header_alone() {
    let records = encode_run(&[], &[]).unwrap();
    assert_eq!(records.len(), 1);
    let mut decoder = StreamDecoder::new(Limits::default());
    assert!(matches!(
        decoder.push(Bytes::from(records[0].clone())).unwrap(),
        Record::Start { restored_len: 0 }
    ));
    assert!(!decoder.is_open());
    decoder.finish().unwrap();
}

#[test]
fn segments_up_to_the_limit_are_accepted() {
    let msg: Vec<u8> = (0..Limits::DEFAULT_MAX_SEGMENT * 2)
        .map(|i| (i / 4096) as u8)
        .collect();
    let half = Limits::DEFAULT_MAX_SEGMENT;
    let specs = [
        SegmentSpec::Plain(half),
        SegmentSpec::Blosc {
            len: half,
            typesize: 4,
            options: CompressOptions::default(),
        },
    ];
    assert_eq!(restore(&encode_run(&msg, &specs).unwrap()), vec![msg]);
}
