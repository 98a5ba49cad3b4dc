//! The `grpc-timeout` request header: how long the client gives the call, as 1 to 8 ASCII
//! digits and a unit (gRPC over HTTP/2: `H`ours, `M`inutes, `S`econds, `m`illiseconds,
//! `u` microseconds, `n`anoseconds).

use std::time::Duration;

use http::HeaderName;

/// The header's name.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Most digits the value may have.
const MAX_DIGITS: usize = 8;

/// The time a `grpc-timeout` value allows, or `None` for a malformed value: a sign,
/// whitespace, more than 8 digits, no digits, or a unit outside `HMSmun`. A malformed
/// value is ignored (no deadline is enforced) and forwarded as it came, as gRPC servers
/// treat it. Zero is accepted: the deadline has already passed.
pub fn parse(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: below 10^8, so no overflow below.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline a request's headers ask for, if they carry a well-formed `grpc-timeout`.
pub fn of_headers(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(GRPC_TIMEOUT)
        .and_then(|value| parse(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_read() {
        assert_eq!(parse(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse(b"200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse(b"250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse(b"7n"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn eight_digits_and_leading_zeros_are_fine() {
        assert_eq!(
            parse(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse(b"00000010S"), Some(Duration::from_secs(10)));
        assert_eq!(parse(b"0m"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            &b""[..],
            b"S",
            b"5",
            b"123456789S",
            b"5s",
            b"5ms",
            b"5 S",
            b" 5S",
            b"5S ",
            b"+5S",
            b"-5S",
            b"5.0S",
            b"0x5S",
            b"\xff5S",
            b"5\xff",
            b"five S",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_header_is_read_from_a_map() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(of_headers(&headers), None);
        headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("1500m"));
        assert_eq!(of_headers(&headers), Some(Duration::from_millis(1500)));
        headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("soon"));
        assert_eq!(of_headers(&headers), None);
    }
}
