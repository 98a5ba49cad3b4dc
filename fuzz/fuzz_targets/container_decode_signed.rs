//! Arbitrary bytes with a valid checksum appended: reaches the header, patch-table and
//! Blosc checks that a checksum mismatch would otherwise stop.
#![no_main]

use bloscar::container::{self, Container, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    bytes.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let limits = Limits {
        max_message_size: 1 << 24,
        max_patches: 256,
        ..Limits::default()
    };
    if let Ok(parsed) = Container::parse(&bytes, &limits) {
        let patched: usize = parsed.patches().map(|p| p.len).sum();
        assert!(patched <= parsed.message_len());
        if let Ok(msg) = parsed.reconstruct() {
            assert_eq!(msg.len(), parsed.message_len());
            assert_eq!(container::decode(&bytes, &limits).unwrap(), msg);
        }
    }
});
