//! The library's error type. Each variant maps to one gRPC status code at the edge.

/// The boxed error type of bodies and services in the proxy and the layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use crate::error_kind::ErrorKind;

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Blosc wrapper refused or failed an operation.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// A bloscar container was malformed, corrupt, or beyond the configured limits.
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    /// An ndarray frame was malformed, corrupt, or beyond the limits.
    #[error(transparent)]
    Ndarray(#[from] crate::ndarray::NdarrayError),
}

impl Error {
    /// The class of the failure, for mapping to a gRPC status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Codec(e) => e.kind(),
            Error::Container(e) => e.kind(),
            Error::Ndarray(e) => e.kind(),
        }
    }
}
