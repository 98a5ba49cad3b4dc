//! gRPC status codes, `grpc-status` / `grpc-message` trailers and trailers-only responses.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

/// The trailer (or trailers-only header) with the status code.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The trailer with the status message.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes a proxy produces or forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    /// The call succeeded.
    Ok = 0,
    /// The call was cancelled, usually by the caller.
    Cancelled = 1,
    /// An error without a better code.
    Unknown = 2,
    /// The client sent something invalid.
    InvalidArgument = 3,
    /// The deadline passed before the call finished.
    DeadlineExceeded = 4,
    /// Something requested was not found.
    NotFound = 5,
    /// Something to create already exists.
    AlreadyExists = 6,
    /// The caller may not do this.
    PermissionDenied = 7,
    /// A limit was hit, e.g. the maximum message size.
    ResourceExhausted = 8,
    /// The system is not in a state that allows the call.
    FailedPrecondition = 9,
    /// The call was aborted, e.g. by a concurrency conflict.
    Aborted = 10,
    /// A value was outside its valid range.
    OutOfRange = 11,
    /// The method (or an encoding) is not supported.
    Unimplemented = 12,
    /// An invariant broke: malformed data, a failed component.
    Internal = 13,
    /// The service cannot be reached right now.
    Unavailable = 14,
    /// Data was lost or corrupted.
    DataLoss = 15,
    /// The caller has no valid credentials.
    Unauthenticated = 16,
}

impl Code {
    /// The numeric value sent in `grpc-status`.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code with this numeric value; unknown values are `Unknown`, as the spec asks.
    pub fn from_u8(value: u8) -> Code {
        use Code::*;
        const ALL: [Code; 17] = [
            Ok,
            Cancelled,
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ];
        ALL.get(usize::from(value)).copied().unwrap_or(Unknown)
    }

    /// A lower-case label for metrics and logs.
    pub fn label(self) -> &'static str {
        use Code::*;
        match self {
            Ok => "ok",
            Cancelled => "cancelled",
            Unknown => "unknown",
            InvalidArgument => "invalid_argument",
            DeadlineExceeded => "deadline_exceeded",
            NotFound => "not_found",
            AlreadyExists => "already_exists",
            PermissionDenied => "permission_denied",
            ResourceExhausted => "resource_exhausted",
            FailedPrecondition => "failed_precondition",
            Aborted => "aborted",
            OutOfRange => "out_of_range",
            Unimplemented => "unimplemented",
            Internal => "internal",
            Unavailable => "unavailable",
            DataLoss => "data_loss",
            Unauthenticated => "unauthenticated",
        }
    }
}

/// A gRPC status the proxy ends a call with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The status code.
    pub code: Code,
    /// A message for people, sent percent-encoded in `grpc-message`.
    pub message: String,
}

impl Status {
    /// A status with this code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }

    /// `grpc-status` and `grpc-message` as a header map (trailers or trailers-only headers).
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(2);
        self.add_to(&mut map);
        map
    }

    /// Writes `grpc-status` and (when not empty) `grpc-message` into `map`.
    pub fn add_to(&self, map: &mut HeaderMap) {
        map.insert(GRPC_STATUS, HeaderValue::from(u16::from(self.code.as_u8())));
        if !self.message.is_empty() {
            let encoded = percent_encode(&self.message);
            // Percent-encoding leaves only visible ASCII, which is always a valid value.
            if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(encoded)) {
                map.insert(GRPC_MESSAGE, value);
            }
        }
    }

    /// The status carried in `map`, when it has a `grpc-status`.
    pub fn from_header_map(map: &HeaderMap) -> Option<Status> {
        let code = map
            .get(GRPC_STATUS)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u8>()
            .ok()?;
        let message = map
            .get(GRPC_MESSAGE)
            .map(|v| percent_decode(v.as_bytes()))
            .unwrap_or_default();
        Some(Status::new(Code::from_u8(code), message))
    }

    /// A trailers-only gRPC response: HTTP 200, `content-type: application/grpc`, the status
    /// in the headers and an empty body (gRPC's form for a call that fails before any message).
    pub fn into_response<B: Default>(self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        self.add_to(headers);
        response
    }
}

impl From<&crate::Error> for Status {
    /// Maps a core failure to the status that ends the call: limits are
    /// RESOURCE_EXHAUSTED, corrupt data DATA_LOSS, malformed containers and Blosc
    /// failures INTERNAL; the message says what was wrong.
    fn from(err: &crate::Error) -> Status {
        let code = match err.kind() {
            crate::ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            crate::ErrorKind::DataLoss => Code::DataLoss,
            crate::ErrorKind::InvalidArgument | crate::ErrorKind::Internal => Code::Internal,
        };
        Status::new(code, format!("bloscar: {err}"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.label())
    }
}

impl std::error::Error for Status {}

/// Percent-encodes a `grpc-message`: bytes outside visible ASCII and `%` itself become `%XX`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded `grpc-message`; malformed escapes are kept as they are.
pub fn percent_decode(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' && i + 2 < value.len() {
            let hex = std::str::from_utf8(&value[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(value[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_through_percent_encoding() {
        let message = "bad container: 100% broken, naïve \r\n";
        let encoded = percent_encode(message);
        assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(percent_decode(encoded.as_bytes()), message);
    }

    #[test]
    fn malformed_escapes_are_kept() {
        assert_eq!(percent_decode(b"50%"), "50%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
    }

    #[test]
    fn status_round_trips_through_headers() {
        let status = Status::new(Code::DataLoss, "checksum mismatch");
        let map = status.to_header_map();
        assert_eq!(map["grpc-status"], "15");
        assert_eq!(Status::from_header_map(&map), Some(status));
    }

    #[test]
    fn unknown_codes_read_as_unknown() {
        assert_eq!(Code::from_u8(99), Code::Unknown);
        assert_eq!(Code::from_u8(8), Code::ResourceExhausted);
    }

    #[test]
    fn trailers_only_response_has_status_in_headers() {
        let response: Response<()> = Status::new(Code::Unavailable, "no upstream").into_response();
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()["grpc-message"], "no upstream");
    }
}
