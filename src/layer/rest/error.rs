//! Why a REST inference call failed in the sidecar, and its HTTP answer: a status and a
//! JSON `{"error": "..."}` body, as the inference servers answer themselves.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::error_kind::ErrorKind;
use crate::layer::BoxBody;

/// A REST inference call the sidecar could not carry.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// `Inference-Header-Content-Length` is not a length.
    #[error("Inference-Header-Content-Length {0:?} is not a byte count")]
    HeaderLength(String),
    /// `Inference-Header-Content-Length` is longer than the body.
    #[error("Inference-Header-Content-Length {header} is beyond the body's {body} bytes")]
    HeaderBeyondBody {
        /// The declared header length.
        header: usize,
        /// The body's length.
        body: usize,
    },
    /// The JSON header does not parse.
    #[error("the inference header is not valid JSON: {0}")]
    NotJson(String),
    /// A `binary_data_size` is not a byte count.
    #[error("binary_data_size of tensor {0:?} is not a byte count")]
    BinarySize(String),
    /// The binary tensors' sizes do not add up to the bytes after the header.
    #[error(
        "the binary_data_size values do not add up to the {present} bytes after the inference header"
    )]
    SizesDisagree {
        /// Bytes after the JSON header.
        present: usize,
    },
    /// The body is larger than the sidecar holds.
    #[error("the body is larger than the {limit}-byte limit (BLOSCAR_MAX_HTTP_BODY_BYTES)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The memory budget could not hold the body.
    #[error("{0}")]
    Budget(#[from] crate::budget::BudgetError),
    /// The body could not be read to its end.
    #[error("the body could not be read: {0}")]
    Body(String),
    /// A `Content-Encoding: bloscar` body does not decode.
    #[error("the bloscar body does not decode: {0}")]
    Decode(#[source] crate::Error),
    /// The upstream could not be reached or failed.
    #[error("the upstream failed: {0}")]
    Upstream(String),
    /// The transform's job did not finish.
    #[error("{0}")]
    Internal(String),
}

impl RestError {
    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            RestError::TooLarge { .. }
            | RestError::Budget(crate::budget::BudgetError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            // The budget is busy with other calls: worth retrying.
            RestError::Budget(_) => StatusCode::SERVICE_UNAVAILABLE,
            RestError::Decode(err) => match err.kind() {
                ErrorKind::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::InvalidArgument | ErrorKind::DataLoss => StatusCode::BAD_REQUEST,
            },
            RestError::Upstream(_) => StatusCode::BAD_GATEWAY,
            RestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A response of `status` with the JSON body `{"error": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<BoxBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let len = body.len();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// The metrics label of a call answered with `status`.
pub fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        400 | 405 | 415 | 422 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        408 | 504 => "deadline_exceeded",
        409 => "already_exists",
        413 | 429 => "resource_exhausted",
        501 => "unimplemented",
        502 | 503 => "unavailable",
        _ => "unknown",
    }
}
