//! bloscar: compress ndarray (tensor) payloads inside gRPC messages with Blosc.
//!
//! The core (`codec`, `container`, `locate`, `message`) does no I/O and knows
//! nothing of HTTP. The proxy and the tower layer are thin glue over it.

pub mod bench;
pub mod codec;
pub mod config;
pub mod container;
pub mod dtype;
pub mod error;
pub mod locate;
pub mod message;
pub mod metrics;
pub mod npy;
pub mod proxy;

pub use codec::{Codec, CompressOptions, Shuffle};
pub use container::Limits;
pub use dtype::DType;
pub use error::Error;
pub use error::ErrorKind;
pub use message::{Chooser, FixedChooser, TensorInfo, TensorOutcome};
pub use message::{EncodedMessage, MessageCodec};
