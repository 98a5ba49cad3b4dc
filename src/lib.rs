//! bloscar: compress ndarray (tensor) payloads inside gRPC messages with Blosc.
//!
//! The core (`codec`, `container`, `locate`, `message`) does no I/O and knows
//! nothing of HTTP. The proxy and the tower layer are thin glue over it.

#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod budget;
pub mod codec;
pub mod config;
pub mod container;
pub mod dtype;
pub mod error;
mod error_kind;
pub mod grpc;
pub mod layer;
pub mod locate;
pub mod log_limit;
pub mod message;
pub mod metrics;
pub mod ndarray;
pub mod npy;
#[cfg(feature = "pb")]
pub mod pb;
pub mod proxy;
pub mod sidecar;
pub mod stream_encoder;
pub mod tls;
pub mod trace;

pub use budget::MemoryBudget;
pub use codec::{Codec, CompressOptions, Shuffle};
pub use container::Limits;
pub use dtype::DType;
pub use error::BoxError;
pub use error::Error;
pub use error::ErrorKind;
pub use layer::{Bloscar, BloscarLayer};
pub use message::{Chooser, FixedChooser, MessageCost, TensorInfo, TensorOutcome};
pub use message::{EncodedMessage, MessageCodec};
