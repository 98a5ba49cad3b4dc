//! The `bloscar` binary.

fn main() {}
