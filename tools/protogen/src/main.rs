//! Regenerates the prost + tonic code in `src/pb/` from the `.proto` files in `proto/`,
//! with a vendored `protoc`, so that building bloscar itself never needs `protoc`.
//!
//! Usage: `bloscar-protogen <repository root>` (see `scripts/gen-proto.sh`).

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "bloscar/v1/ndarray.proto",
    "test/kserve.proto",
    "test/tensorflow.proto",
    "test/tfserving.proto",
    "test/imaging.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).ok_or("usage: bloscar-protogen <repo root>")?);
    let proto_dir = root.join("proto");
    let out_dir = root.join("src/pb");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Ordered maps: messages encode their map entries in a deterministic order.
    config.btree_map(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out_dir)
        .emit_rerun_if_changed(false)
        .compile_with_config(config, &protos, &[proto_dir])?;
    Ok(())
}
