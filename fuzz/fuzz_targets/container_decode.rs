//! Arbitrary bytes as a container, as a peer could send them.
#![no_main]

use std::sync::Arc;

use bloscar::locate::Locator;
use bloscar::{CompressOptions, FixedChooser, Limits, MessageCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_size: 1 << 24,
        max_patches: 256,
        ..Limits::default()
    };
    let chooser = FixedChooser {
        options: CompressOptions::default(),
        min_size: 0,
    };
    let codec = MessageCodec::new(Locator::default(), Arc::new(chooser), limits);
    if let Ok(msg) = codec.decode(data) {
        assert!(msg.len() <= limits.max_message_size);
    }
});
