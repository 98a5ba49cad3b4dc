//! The library's error type. Each variant maps to one gRPC status code at the edge.

/// The boxed error type of bodies and services in the proxy and the layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The class of a failure, which the edge maps to a gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input is not what the operation accepts (`INVALID_ARGUMENT`).
    InvalidArgument,
    /// The data is corrupt or truncated (`DATA_LOSS`).
    DataLoss,
    /// A size or count is beyond the configured limits (`RESOURCE_EXHAUSTED`).
    ResourceExhausted,
    /// A bug or an unexpected failure of c-blosc (`INTERNAL`).
    Internal,
}

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
