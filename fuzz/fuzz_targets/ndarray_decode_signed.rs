//! Arbitrary bytes with a valid checksum appended, as an ndarray frame.
#![no_main]

use bloscar::Limits;
use bloscar::ndarray::decompress_ndarray;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    bytes.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let limits = Limits {
        max_message_size: 1 << 24,
        max_patches: 0,
        ..Limits::default()
    };
    if let Ok(array) = decompress_ndarray(&bytes, &limits) {
        let count = array
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        assert!(count.is_some());
        assert!(array.data.len() <= limits.max_message_size);
    }
});
