//! The streaming walk on hand-built and hostile messages. Messages built with a real
//! protobuf encoder are in tests/locate_messages.rs.

use proptest::prelude::*;

use super::*;
use crate::locate::{TaggedRule, TensorRange};

/// A located tensor as the spans tell it: (offset, start).
type Located = Vec<(usize, TensorStart)>;

/// Feeds `msg` in chunks of the sizes in `chunks` (cycled), checking that each feed's
/// spans cover exactly its bytes and are never empty, and that a tensor's spans follow
/// each other and add up to its length. Returns the tensors.
fn walk(walk: &mut StreamWalk, msg: &[u8], chunks: &[usize]) -> Located {
    let mut spans = Vec::new();
    let mut pos = 0;
    for &size in chunks.iter().cycle() {
        if pos >= msg.len() {
            break;
        }
        let n = size.clamp(1, msg.len() - pos);
        let before = spans.len();
        walk.feed(&msg[pos..pos + n], &mut spans);
        let covered: usize = spans[before..].iter().map(Span::len).sum();
        assert_eq!(covered, n, "a feed of {n} bytes at {pos}");
        assert!(spans[before..].iter().all(|s| !s.is_empty()));
        pos += n;
    }
    assert_eq!(walk.position(), msg.len());
    tensors(&spans)
}

fn tensors(spans: &[Span]) -> Located {
    let mut out: Located = Vec::new();
    let mut offset = 0;
    // Bytes still due to the open tensor.
    let mut open = 0;
    for span in spans {
        match span {
            Span::Plain(len) => {
                assert_eq!(open, 0, "plain bytes inside a tensor at {offset}");
                offset += len;
            }
            Span::Tensor {
                len,
                start: Some(start),
            } => {
                assert_eq!(open, 0, "a tensor starts inside another at {offset}");
                assert!(*len <= start.len && start.len > 0 && start.elem_size > 0);
                open = start.len - len;
                out.push((offset, start.clone()));
                offset += len;
            }
            Span::Tensor { len, start: None } => {
                assert!(*len <= open, "a continuation past its tensor at {offset}");
                open -= len;
                offset += len;
            }
        }
    }
    out
}

fn as_located(ranges: &[TensorRange<'_>]) -> Located {
    ranges
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

fn len_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn input(name: &[u8], datatype: &str) -> Vec<u8> {
    let mut t = Vec::new();
    len_field(&mut t, 1, name);
    len_field(&mut t, 2, datatype.as_bytes());
    t
}

/// A request with one FP32 raw input and one typed FP32 input.
fn kserve_request() -> Vec<u8> {
    let mut msg = Vec::new();
    len_field(&mut msg, 1, b"resnet");
    len_field(&mut msg, 2, b"3");
    len_field(&mut msg, 5, &input(b"a", "FP32"));
    let mut typed = input(b"t", "FP32");
    len_field(&mut typed, 5, &[0x32, 8, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
    len_field(&mut msg, 5, &typed);
    len_field(&mut msg, 7, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    msg
}

fn locator() -> Locator {
    Locator::default()
}

const METHODS: [&str; 3] = [
    KSERVE_MODEL_INFER,
    KSERVE_MODEL_STREAM_INFER,
    TF_SERVING_PREDICT,
];

#[test]
fn kserve_request_in_every_chunk_size() {
    let msg = kserve_request();
    let want = as_located(&locator().locate(KSERVE_MODEL_INFER, Direction::Request, &msg));
    assert_eq!(want.len(), 2);
    for size in 1..=msg.len() {
        let mut w = locator()
            .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
            .unwrap();
        assert_eq!(walk(&mut w, &msg, &[size]), want, "chunks of {size}");
        assert!(w.is_done() && !w.is_malformed());
        let model = ModelId {
            name: "resnet".into(),
            version: "3".into(),
            signature: String::new(),
        };
        assert_eq!(w.model(), Some(&model));
    }
}

#[test]
fn model_is_known_once_its_fields_are_past() {
    let msg = kserve_request();
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    let mut spans = Vec::new();
    // Up to the end of model_version: the walk cannot know whether another model field
    // follows.
    w.feed(&msg[..11], &mut spans);
    assert_eq!(w.model(), None);
    w.feed(&msg[11..12], &mut spans);
    assert_eq!(w.model().map(|m| m.name.as_str()), Some("resnet"));
    assert_eq!(
        locator()
            .model(KSERVE_MODEL_INFER, Direction::Request, &msg)
            .map(|m| m.version),
        Some("3".into())
    );
    assert_eq!(locator().model("/x.Y/Z", Direction::Request, &msg), None);
}

#[test]
fn empty_message_has_an_empty_model() {
    for method in METHODS {
        let w = locator().stream(method, Direction::Response, 0).unwrap();
        assert_eq!(w.model(), Some(&ModelId::default()));
        assert!(w.is_done());
    }
}

#[test]
fn unknown_and_ruled_methods_do_not_stream() {
    assert!(locator().stream("/x.Y/Z", Direction::Request, 4).is_none());
    let rules = TaggedRule::parse_list(&format!("{KSERVE_MODEL_INFER}@request=7:dtype=u8"));
    let ruled = Locator::new(rules.unwrap());
    assert!(
        ruled
            .stream(KSERVE_MODEL_INFER, Direction::Request, 4)
            .is_none()
    );
    assert!(
        ruled
            .stream(KSERVE_MODEL_INFER, Direction::Response, 4)
            .is_some()
    );
}

#[test]
fn bytes_past_the_message_are_plain() {
    let msg = kserve_request();
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len() - 12)
        .unwrap();
    let mut spans = Vec::new();
    w.feed(&msg, &mut spans);
    assert_eq!(spans.iter().map(Span::len).sum::<usize>(), msg.len());
    // The message is said to end before the raw entry's payload: the raw entry's length
    // runs past it.
    assert!(tensors(&spans).len() <= 1);
}

#[test]
fn lying_lengths_make_the_rest_plain() {
    let mut msg = Vec::new();
    len_field(&mut msg, 5, &input(b"a", "FP32"));
    // raw_input_contents says 2^63 bytes.
    msg.push(7 << 3 | 2);
    msg.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    msg.extend_from_slice(&[0; 64]);
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    assert_eq!(walk(&mut w, &msg, &[3]), vec![]);
    assert!(w.is_malformed());
    // A tensor whose length runs past its message.
    let mut msg = Vec::new();
    len_field(&mut msg, 5, &[0x12, 40, b'F']);
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    assert_eq!(walk(&mut w, &msg, &[1]), vec![]);
    assert!(w.is_malformed());
}

#[test]
fn deep_groups_are_refused_without_growing() {
    let mut msg = vec![0x0b; 10_000];
    msg.extend(vec![0x0c; 10_000]);
    for method in METHODS {
        let mut w = locator()
            .stream(method, Direction::Request, msg.len())
            .unwrap();
        assert_eq!(walk(&mut w, &msg, &[7]), vec![]);
        assert!(w.is_malformed());
    }
    // Shallow groups are skipped like the whole-message walker does.
    let mut msg = vec![0x5b; 50];
    msg.extend(vec![0x5c; 50]);
    len_field(&mut msg, 5, &input(b"a", "INT16"));
    len_field(&mut msg, 7, &[1, 2, 3, 4]);
    let want = as_located(&locator().locate(KSERVE_MODEL_INFER, Direction::Request, &msg));
    assert_eq!(want.len(), 1);
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    assert_eq!(walk(&mut w, &msg, &[1]), want);
}

#[test]
fn deep_sub_messages_in_skipped_fields_are_plain() {
    // 200 levels of field 3 inside field 3: the walk does not descend into them.
    let mut inner = Vec::new();
    for _ in 0..200 {
        let mut outer = Vec::new();
        len_field(&mut outer, 3, &inner);
        inner = outer;
    }
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, inner.len())
        .unwrap();
    assert_eq!(walk(&mut w, &inner, &[5]), vec![]);
    assert!(!w.is_malformed() && w.is_done());
}

#[test]
fn huge_captures_are_not_understood() {
    let long = vec![b'n'; MAX_CAPTURE + 1];
    let mut msg = Vec::new();
    len_field(&mut msg, 1, &long);
    len_field(&mut msg, 5, &input(&long, "FP32"));
    len_field(&mut msg, 5, &input(b"b", "FP32"));
    len_field(&mut msg, 7, &[1; 8]);
    len_field(&mut msg, 7, &[2; 8]);
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    let got = walk(&mut w, &msg, &[4096]);
    // The input with the long name keeps its raw entry plain; the next one is located.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.name, "b");
    assert_eq!(w.model().map(|m| m.name.as_str()), Some(""));
    let Inner::KServe(walker) = &w.inner else {
        unreachable!()
    };
    assert!(walker.capture.capacity() <= 4096);
}

#[test]
fn waiting_tensors_have_a_memory_budget() {
    // 40 inputs with 60 KiB names: more than the budget, so the last ones are plain.
    let mut msg = Vec::new();
    let names: Vec<Vec<u8>> = (0..40u8).map(|i| vec![b'a' + i % 26; 60_000]).collect();
    for name in &names {
        len_field(&mut msg, 5, &input(name, "UINT8"));
    }
    for i in 0..40u8 {
        len_field(&mut msg, 7, &[i; 3]);
    }
    let whole = locator().locate(KSERVE_MODEL_INFER, Direction::Request, &msg);
    assert_eq!(whole.len(), 40);
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    let got = walk(&mut w, &msg, &[65536]);
    assert!(!got.is_empty() && got.len() < 40, "{}", got.len());
    assert_eq!(got, as_located(&whole)[..got.len()]);
}

#[test]
fn raw_entries_before_their_inputs_stay_plain() {
    let mut msg = Vec::new();
    len_field(&mut msg, 7, &[1, 2, 3, 4]);
    len_field(&mut msg, 5, &input(b"a", "FP32"));
    len_field(&mut msg, 5, &input(b"b", "FP32"));
    len_field(&mut msg, 7, &[5, 6, 7, 8]);
    let mut w = locator()
        .stream(KSERVE_MODEL_INFER, Direction::Request, msg.len())
        .unwrap();
    let got = walk(&mut w, &msg, &[1]);
    // Entry 1 belongs to input "b", which came before it: located.
    let names: Vec<_> = got.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn malformed_model_spec_leaves_the_tensors_alone() {
    // PredictRequest { model_spec: <garbage>, inputs: { "x": { dtype FLOAT, content } } }
    let mut msg = Vec::new();
    len_field(&mut msg, 1, &[0x0a, 0x30, b'm']);
    let mut tensor = vec![0x08, 1];
    len_field(&mut tensor, 4, &[0, 0, 0x80, 0x3f]);
    let mut entry = Vec::new();
    len_field(&mut entry, 1, b"x");
    len_field(&mut entry, 2, &tensor);
    len_field(&mut msg, 2, &entry);
    let want = as_located(&locator().locate(TF_SERVING_PREDICT, Direction::Request, &msg));
    assert_eq!(want.len(), 1);
    for size in 1..4 {
        let mut w = locator()
            .stream(TF_SERVING_PREDICT, Direction::Request, msg.len())
            .unwrap();
        assert_eq!(walk(&mut w, &msg, &[size]), want);
        assert!(!w.is_malformed());
        assert_eq!(w.model(), Some(&ModelId::default()));
    }
}

#[test]
fn walk_is_send_and_static() {
    fn send<T: Send + 'static>() {}
    send::<StreamWalk>();
}

/// Every way of cutting `msg` gives the same tensors as feeding it whole.
fn check_any_chunking(msg: &[u8], chunks: &[usize]) {
    for method in METHODS {
        for direction in [Direction::Request, Direction::Response] {
            let mut whole = locator().stream(method, direction, msg.len()).unwrap();
            let mut cut = locator().stream(method, direction, msg.len()).unwrap();
            let want = walk(&mut whole, msg, &[msg.len()]);
            assert_eq!(walk(&mut cut, msg, chunks), want);
            assert_eq!(cut.model(), whole.model());
            assert_eq!(cut.is_malformed(), whole.is_malformed());
            for (offset, start) in &want {
                assert!(offset + start.len <= msg.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_in_random_chunks(
        msg in prop::collection::vec(any::<u8>(), 0..600),
        chunks in prop::collection::vec(1usize..40, 1..6),
    ) {
        check_any_chunking(&msg, &chunks);
    }

    #[test]
    fn corrupted_requests_in_random_chunks(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        chunks in prop::collection::vec(1usize..40, 1..6),
    ) {
        let mut msg = kserve_request();
        for (index, byte) in flips {
            let i = index.index(msg.len());
            msg[i] ^= byte;
        }
        check_any_chunking(&msg, &chunks);
        let cut = cut.index(msg.len());
        check_any_chunking(&msg[..cut], &chunks);
    }
}
