//! The locators agree with the real protocol packages: Python scripts build messages with
//! `tritonclient[grpc]`'s own request builder and generated classes, and with the TF
//! Serving stubs of `min-tfs-client`, and write each message with the byte ranges of its
//! tensors (found in Python from the tensors' own bytes). The locator must report exactly
//! those ranges, and the message must survive a container round trip bit-exact.
//!
//! The virtual environments come from `scripts/venvs.sh`, which this test runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bloscar::locate::{Direction, Locator};
use bloscar::{CompressOptions, FixedChooser, Limits, MessageCodec};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs both generator scripts into a fresh directory.
fn generate() -> PathBuf {
    run(Command::new("bash").arg(repo().join("scripts/venvs.sh")));
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python_peers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for (venv, script) in [
        ("triton-client", "kserve_messages.py"),
        ("tfs", "tfserving_messages.py"),
    ] {
        run(
            Command::new(repo().join(".venvs").join(venv).join("bin/python"))
                .arg(repo().join("tests/python").join(script))
                .arg(&out),
        );
    }
    out
}

/// One message and what the Python side expects the locator to find in it.
struct Case {
    methods: Vec<String>,
    direction: Direction,
    /// (offset, len, elem_size, dtype name, tensor name)
    ranges: Vec<(usize, usize, usize, String, String)>,
}

fn parse_case(text: &str) -> Case {
    let mut case = Case {
        methods: Vec::new(),
        direction: Direction::Request,
        ranges: Vec::new(),
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["method", method] => case.methods.push((*method).to_owned()),
            ["direction", "request"] => case.direction = Direction::Request,
            ["direction", "response"] => case.direction = Direction::Response,
            ["range", offset, len, elem_size, dtype, name] => case.ranges.push((
                offset.parse().unwrap(),
                len.parse().unwrap(),
                elem_size.parse().unwrap(),
                (*dtype).to_owned(),
                (*name).to_owned(),
            )),
            _ => panic!("unexpected line {line:?}"),
        }
    }
    case
}

#[test]
fn locators_agree_with_real_python_packages() {
    let out = generate();
    let locator = Locator::default();
    let chooser = FixedChooser {
        options: CompressOptions::default(),
        min_size: 0,
    };
    let codec = MessageCodec::new(locator.clone(), Arc::new(chooser), Limits::default());
    let names = [
        "kserve_request",
        "kserve_response",
        "kserve_stream_response",
        "tfs_request",
        "tfs_response",
    ];
    let mut encoded_count = 0;
    for name in names {
        let msg = std::fs::read(out.join(format!("{name}.bin"))).unwrap();
        let case =
            parse_case(&std::fs::read_to_string(out.join(format!("{name}.ranges"))).unwrap());
        assert!(
            !case.methods.is_empty() && case.ranges.len() >= 5,
            "{name}: too few tensors"
        );
        for method in &case.methods {
            let got: Vec<_> = locator
                .locate(method, case.direction, &msg)
                .iter()
                .map(|r| {
                    (
                        r.offset,
                        r.len,
                        r.elem_size,
                        r.dtype.to_string(),
                        r.name.to_owned(),
                    )
                })
                .collect();
            assert_eq!(got, case.ranges, "{name} as {method}");
            // Random tensors may not shrink: the message then travels as identity.
            if let Some(encoded) = codec.encode(method, case.direction, &msg).unwrap() {
                let decoded = codec.decode(&encoded.bytes).unwrap();
                assert_eq!(decoded, msg, "{name} as {method}");
                encoded_count += 1;
            }
        }
    }
    // The KServe messages hold a 0/1 mask that compresses well.
    assert!(
        encoded_count >= 3,
        "only {encoded_count} messages were encoded"
    );
    let _ = std::fs::remove_dir_all(&out);
}
