//! The library's error type. Each variant maps to one gRPC status code at the edge.

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Blosc wrapper refused or failed an operation.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// A bloscar container was malformed, corrupt, or beyond the configured limits.
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
}
