//! The bloscar message encoding: skeleton + patches. See `docs/wire-format.md`.

/// Failures decoding a container; everything in a container is untrusted.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {}
