//! Arbitrary rule strings (up to the first newline) applied to the message that follows.
#![no_main]

use bloscar::locate::{Direction, Locator, TaggedRule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let msg = data.get(split + 1..).unwrap_or_default();
    let Ok(rules) = TaggedRule::parse_list(text) else {
        return;
    };
    let methods: Vec<String> = rules.iter().map(|r| r.method().to_owned()).collect();
    let locator = Locator::new(rules);
    for method in &methods {
        for direction in [Direction::Request, Direction::Response] {
            let mut end = 0;
            for range in locator.locate(method, direction, msg) {
                assert!(range.len > 0 && range.offset >= end);
                end = range.offset + range.len;
                assert!(end <= msg.len());
            }
        }
    }
});
