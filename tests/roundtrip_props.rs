//! Bit-exactness: every codec, shuffle, level and element size; any data; any patch set.

use bloscar::codec::{self, Codec, CompressOptions, Shuffle};
use bloscar::container::{self, Limits, PatchSpec};
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

fn typesize() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![0, 1, 2, 3, 4, 5, 7, 8, 12, 16, 255, 256, 1000])
}

/// Random bytes, or smooth numeric-looking data that actually compresses.
fn data(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (0..max, any::<u32>(), 1u32..64).prop_map(|(len, seed, step)| {
            (0..len as u32)
                .map(|i| ((seed.wrapping_add(i / step)) >> (i % 4 * 8)) as u8)
                .collect()
        }),
        (0..max).prop_map(|len| vec![0u8; len]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn codec_round_trip_is_bit_exact(src in data(20_000), typesize in typesize(), opts in options()) {
        let mut packed = Vec::new();
        codec::compress(&src, typesize, opts, &mut packed).unwrap();
        prop_assert!(packed.len() <= codec::compressed_bound(src.len(), typesize));
        prop_assert_eq!(codec::decompressed_len(&packed).unwrap(), src.len());
        let mut out = vec![0xa5u8; src.len()];
        codec::decompress(&packed, &mut out).unwrap();
        prop_assert_eq!(&out, &src);
        let mut appended = Vec::new();
        codec::decompress_append(&packed, src.len(), &mut appended).unwrap();
        prop_assert_eq!(appended, src);
    }

    #[test]
    fn container_round_trip_is_bit_exact(
        msg in data(30_000),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..12),
        settings in prop::collection::vec((typesize(), options()), 12),
    ) {
        // Random sorted, non-overlapping, non-empty ranges.
        let mut bounds: Vec<usize> = cuts
            .iter()
            .flat_map(|(a, b)| [a.index(msg.len() + 1), b.index(msg.len() + 1)])
            .collect();
        bounds.sort_unstable();
        let specs: Vec<PatchSpec> = bounds
            .chunks_exact(2)
            .filter(|pair| pair[1] > pair[0])
            .zip(&settings)
            .map(|(pair, &(elem_size, options))| PatchSpec {
                offset: pair[0],
                len: pair[1] - pair[0],
                elem_size,
                options,
            })
            .collect();
        let encoded = container::encode(&msg, &specs).unwrap();
        prop_assert_eq!(encoded.patches.len(), specs.len());
        let decoded = container::decode(&encoded.bytes, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, msg);
    }
}

#[test]
fn settings_strings_parse_and_print() {
    for codec in Codec::ALL {
        for shuffle in Shuffle::ALL {
            for level in 0..=9 {
                let opts = CompressOptions::new(codec, level, shuffle).unwrap();
                assert_eq!(opts.to_string().parse::<CompressOptions>().unwrap(), opts);
            }
        }
    }
    let parsed: CompressOptions = "ZSTD".parse().unwrap();
    assert_eq!(parsed.to_string(), "zstd:5:byte");
    assert_eq!(
        "lz4:1".parse::<CompressOptions>().unwrap().to_string(),
        "lz4:1:byte"
    );
    assert_eq!(
        "lz4hc:9:bitshuffle"
            .parse::<CompressOptions>()
            .unwrap()
            .to_string(),
        "lz4hc:9:bit"
    );
    for bad in [
        "",
        "gzip",
        "lz4:10",
        "lz4:x",
        "lz4:5:word",
        "lz4:5:byte:1",
        "lz4::byte",
    ] {
        assert!(bad.parse::<CompressOptions>().is_err(), "{bad:?}");
    }
}
