//! Hop-by-hop headers: they describe one connection and never cross the proxy.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that belong to one connection (RFC 9110 §7.6.1), besides any named in
/// `connection`. `te` is kept when it says only `trailers`, which gRPC requires.
/// Names, not strings: a lookup by string parses and hashes the name each time, and this
/// runs twice per call and hop.
const HOP_BY_HOP: [HeaderName; 7] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers from `headers`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // HTTP/2 forbids them all but `te`: most messages have none, and a look at each
    // name is cheaper than a removal of each hop-by-hop name.
    let te_is_trailers = |headers: &HeaderMap| {
        headers
            .get(header::TE)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    };
    let any = headers
        .keys()
        .any(|name| name == header::CONNECTION || HOP_BY_HOP.contains(name));
    if !any && te_is_trailers(headers) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != header::TE {
            headers.remove(name);
        }
    }
    headers.remove(header::CONNECTION);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if !te_is_trailers(headers) {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_and_te_trailers_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("upgrade", HeaderValue::from_static("h2c"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("grpc-timeout", HeaderValue::from_static("1S"));
        headers.insert("x-user", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["grpc-timeout", "te", "x-user"]);
    }

    #[test]
    fn te_other_than_trailers_is_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty());
    }
}
