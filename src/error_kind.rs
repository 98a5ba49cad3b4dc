//! The class of a failure: a leaf module, so that every core module can name it without
//! importing the error type that aggregates their errors.

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
