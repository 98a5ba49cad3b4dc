#!/usr/bin/env bash
# Regenerates the checked-in prost/tonic code in src/pb/ from proto/*.proto.
# Run after editing a .proto file; building bloscar itself needs no protoc.
# The generator (tools/protogen) uses a vendored protoc, so nothing needs installing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p src/pb
cargo run --quiet --manifest-path tools/protogen/Cargo.toml -- "$PWD"
cargo fmt -- src/pb/*.rs
