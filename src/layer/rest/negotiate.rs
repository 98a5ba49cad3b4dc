//! Negotiation of `Content-Encoding: bloscar` on REST bodies, over header maps.
//!
//! The sidecars speak for themselves with an `Accept-Encoding: bloscar` field line of
//! their own, added to what they send each other and removed before an app sees it:
//! the outbound adds it to requests, the inbound to responses. Being a separate field
//! line, it leaves the app's own `Accept-Encoding` lines exactly as they were once it is
//! removed; a server without a sidecar reads it as one more encoding it does not know,
//! and picks from the app's list as before.
//!
//! A body goes as `bloscar` only to a peer that advertised it: the inbound encodes a
//! response only when its request carried the advertisement, and the outbound encodes a
//! request only once a REST response from the peer carried it.

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
use http::{HeaderMap, HeaderValue};

/// The content coding of a bloscar container.
pub const BLOSCAR: &str = "bloscar";

/// What a body's `Content-Encoding` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCoding {
    /// No coding: the body as the app wrote it.
    Identity,
    /// A bloscar container from the peer sidecar.
    Bloscar,
    /// The app's own coding (gzip, deflate, ...): the body passes as it is.
    App,
}

/// The coding of a body with `headers`.
pub fn coding(headers: &HeaderMap) -> BodyCoding {
    let mut values = headers.get_all(CONTENT_ENCODING).iter();
    match (values.next(), values.next()) {
        (None, _) => BodyCoding::Identity,
        (Some(value), None) => {
            let value = value.as_bytes().trim_ascii();
            if value.eq_ignore_ascii_case(BLOSCAR.as_bytes()) {
                BodyCoding::Bloscar
            } else if value.is_empty() || value.eq_ignore_ascii_case(b"identity") {
                BodyCoding::Identity
            } else {
                BodyCoding::App
            }
        }
        _ => BodyCoding::App,
    }
}

/// Adds the sidecar's advertisement.
pub fn advertise(headers: &mut HeaderMap) {
    headers.append(ACCEPT_ENCODING, HeaderValue::from_static(BLOSCAR));
}

/// Whether `headers` carry the peer sidecar's advertisement; removes it, leaving the
/// app's own `Accept-Encoding` as the app wrote it.
pub fn take_advertisement(headers: &mut HeaderMap) -> bool {
    let values: Vec<HeaderValue> = headers.get_all(ACCEPT_ENCODING).iter().cloned().collect();
    let listed = |v: &HeaderValue| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(BLOSCAR))
    };
    if !values.iter().any(listed) {
        return false;
    }
    headers.remove(ACCEPT_ENCODING);
    for value in values {
        if !listed(&value) {
            headers.append(ACCEPT_ENCODING, value);
            continue;
        }
        // A line that someone merged with the app's own: keep the app's part.
        let rest: Vec<&str> = value
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(BLOSCAR))
            .collect();
        if let Ok(value) = HeaderValue::from_str(&rest.join(", "))
            && !rest.is_empty()
        {
            headers.append(ACCEPT_ENCODING, value);
        }
    }
    true
}

/// Marks a body as a bloscar container.
pub fn set_bloscar(headers: &mut HeaderMap) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(BLOSCAR));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(ACCEPT_ENCODING)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_advertisement_leaves_the_apps_accept_encoding_exact() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=1.0, deflate"),
        );
        advertise(&mut headers);
        assert_eq!(lines(&headers), ["gzip;q=1.0, deflate", "bloscar"]);
        assert!(take_advertisement(&mut headers));
        assert_eq!(lines(&headers), ["gzip;q=1.0, deflate"]);
        assert!(!take_advertisement(&mut headers));

        let mut none = HeaderMap::new();
        advertise(&mut none);
        assert!(take_advertisement(&mut none));
        assert!(none.is_empty());

        let mut merged = HeaderMap::new();
        merged.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, BLOSCAR"));
        assert!(take_advertisement(&mut merged));
        assert_eq!(lines(&merged), ["gzip"]);
    }

    #[test]
    fn codings() {
        let mut headers = HeaderMap::new();
        assert_eq!(coding(&headers), BodyCoding::Identity);
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert_eq!(coding(&headers), BodyCoding::Identity);
        set_bloscar(&mut headers);
        assert_eq!(coding(&headers), BodyCoding::Bloscar);
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(coding(&headers), BodyCoding::App);
        headers.append(CONTENT_ENCODING, HeaderValue::from_static("bloscar"));
        assert_eq!(coding(&headers), BodyCoding::App);
    }
}
