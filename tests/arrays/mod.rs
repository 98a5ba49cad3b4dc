//! Arrays written by numpy (and images shipped by scikit-image) for the tests that read
//! `.npy` files. `scripts/venv-skimage.sh` makes the Python environment and
//! `tests/python/arrays.py` writes the files, once per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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

/// The folder holding `npy/` and `images/` (see `tests/python/arrays.py`).
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        run(Command::new("bash").arg(repo().join("scripts/venv-skimage.sh")));
        let out =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("arrays-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        run(Command::new(repo().join(".venvs/skimage/bin/python"))
            .arg(repo().join("tests/python/arrays.py"))
            .arg(&out));
        out
    })
}

/// The bytes of `dir()/rel`.
pub fn read(rel: &str) -> Vec<u8> {
    let path = dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
