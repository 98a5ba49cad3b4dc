//! gRPC over HTTP/2 as a proxy sees it: message framing, statuses, message encodings,
//! deadlines.

pub mod encoding;
pub mod error_body;
mod error_slot;
pub mod frame;
pub mod status;
pub mod timeout;

pub use encoding::Encoding;
pub use error_slot::ErrorSlot;
pub use status::{Code, Status};

/// Whether a `content-type` names gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.strip_prefix("application/grpc").is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('+') || rest.starts_with(';')
            })
        })
}
