#!/usr/bin/env bash
# Regenerates the checked-in prost/tonic code in src/pb/ from proto/*.proto.
# Run after editing a .proto file; building bloscar itself needs no protoc.
# The generator (tools/protogen) uses a vendored protoc, so nothing needs installing.
#
#   scripts/gen-proto.sh           rewrite src/pb/*.rs
#   scripts/gen-proto.sh --check   fail if src/pb/*.rs differ from what proto/ generates
set -euo pipefail
cd "$(dirname "$0")/.."

generate() { # generate REPO_ROOT: writes REPO_ROOT/src/pb/*.rs from REPO_ROOT/proto
    mkdir -p "$1/src/pb"
    cargo run --quiet --manifest-path tools/protogen/Cargo.toml -- "$1"
    rustfmt --edition 2024 "$1"/src/pb/*.rs
}

if [[ ${1:-} == --check ]]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    cp -r proto "$scratch/proto"
    generate "$scratch"
    for file in "$scratch"/src/pb/*.rs; do
        diff -u "src/pb/$(basename "$file")" "$file"
    done
    echo "src/pb is up to date"
else
    generate "$PWD"
fi
