//! Arbitrary bytes as a message of every built-in protocol and of some tagged rules: the
//! locators never panic, return sorted in-range ranges, and encode + decode restores the
//! message exactly.
#![no_main]

use std::sync::{Arc, LazyLock};

use bloscar::locate::{
    Direction, KSERVE_MODEL_INFER, KSERVE_MODEL_STREAM_INFER, Locator, TF_SERVING_PREDICT,
    TaggedRule,
};
use bloscar::{CompressOptions, FixedChooser, Limits, MessageCodec};
use libfuzzer_sys::fuzz_target;

const TAGGED: &str = "/fuzz.v1.S/Ndarray=1;\
    /fuzz.v1.S/Raw@request=2.3:dtype=2:name=1;\
    /fuzz.v1.S/Map@response=3.2:dtype=uint16;\
    /fuzz.v1.S/Onnx=1.9:dtype=2/onnx:name=8";

static CODEC: LazyLock<MessageCodec> = LazyLock::new(|| {
    let rules = TaggedRule::parse_list(TAGGED).expect("valid rules");
    let chooser = FixedChooser {
        options: "lz4:1:byte".parse::<CompressOptions>().unwrap(),
        min_size: 0,
    };
    let limits = Limits {
        max_message_size: usize::MAX,
        max_patches: usize::MAX,
        ..Limits::default()
    };
    MessageCodec::new(Locator::new(rules), Arc::new(chooser), limits)
});

const METHODS: [&str; 7] = [
    KSERVE_MODEL_INFER,
    KSERVE_MODEL_STREAM_INFER,
    TF_SERVING_PREDICT,
    "/fuzz.v1.S/Ndarray",
    "/fuzz.v1.S/Raw",
    "/fuzz.v1.S/Map",
    "/fuzz.v1.S/Onnx",
];

fuzz_target!(|data: &[u8]| {
    let codec = &*CODEC;
    for method in METHODS {
        for direction in [Direction::Request, Direction::Response] {
            let ranges = codec.locator().locate(method, direction, data);
            let mut end = 0;
            for range in &ranges {
                assert!(range.len > 0 && range.offset >= end);
                end = range.offset + range.len;
                assert!(end <= data.len());
            }
            if let Some(encoded) = codec.encode(method, direction, data).unwrap() {
                assert_eq!(codec.decode(&encoded.bytes).unwrap(), data);
            }
        }
    }
});
