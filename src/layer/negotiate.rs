//! Negotiation of the `bloscar` encoding, as pure functions over header maps.
//!
//! gRPC's own mechanism carries it: `grpc-encoding` names a stream's message encoding and
//! `grpc-accept-encoding` lists what a peer reads. The sidecars add their token to what
//! they send each other and take it out of what the apps see, so the apps always speak
//! identity (or their own encodings) and never learn the sidecars are there.

use http::{HeaderMap, HeaderValue};

use crate::grpc::encoding::{self, BLOSCAR, Encoding, GRPC_ENCODING};
use crate::grpc::status::GRPC_STATUS;

/// What a body needs on its way through the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Messages travel as they are.
    Pass,
    /// Messages leave as bloscar; the app sent them in `source`.
    Encode {
        /// The encoding the app's compressed messages are in.
        source: Encoding,
    },
    /// Bloscar messages arrive and leave as identity.
    Decode,
}

/// The encodings an app may compress with that the sidecar can undo.
const APP_ENCODINGS: [&str; 3] = ["gzip", "deflate", "zstd"];

/// Outbound request: advertises `bloscar` to the peer; encodes when the peer reads it
/// and the method may carry tensors.
pub fn outbound_request(headers: &mut HeaderMap, peer_reads: bool, method_known: bool) -> BodyPlan {
    encoding::add_accept(headers, BLOSCAR);
    match Encoding::from_headers(headers) {
        Ok(source) if peer_reads && method_known && source != Encoding::Bloscar => {
            headers.insert(GRPC_ENCODING, HeaderValue::from_static(BLOSCAR));
            BodyPlan::Encode { source }
        }
        _ => BodyPlan::Pass,
    }
}

/// Outbound response: whether the peer reads `bloscar`, and what to do with the body;
/// the token is taken out of what the client app sees.
pub fn outbound_response(headers: &mut HeaderMap) -> (bool, BodyPlan) {
    let peer_reads = encoding::accepts(headers, BLOSCAR);
    encoding::remove_accept(headers, BLOSCAR);
    (peer_reads, decode_plan(headers))
}

/// Inbound request: whether the client side reads `bloscar` (it runs a sidecar), and
/// what to do with the body.
///
/// When it does, the app's gzip, deflate and zstd are also taken out of the
/// `grpc-accept-encoding` passed to the server app: the server then answers in
/// identity, and the sidecar compresses once with Blosc, instead of the server
/// deflating what the sidecar would inflate and compress again.
pub fn inbound_request(headers: &mut HeaderMap) -> (bool, BodyPlan) {
    let reads_bloscar = encoding::accepts(headers, BLOSCAR);
    encoding::remove_accept(headers, BLOSCAR);
    if reads_bloscar {
        for token in APP_ENCODINGS {
            encoding::remove_accept(headers, token);
        }
    }
    (reads_bloscar, decode_plan(headers))
}

/// Inbound response: advertises `bloscar`; encodes when the request said the client
/// side reads it, the response is not trailers-only and the method may carry tensors.
pub fn inbound_response(
    headers: &mut HeaderMap,
    client_reads: bool,
    method_known: bool,
) -> BodyPlan {
    encoding::add_accept(headers, BLOSCAR);
    let trailers_only = headers.contains_key(GRPC_STATUS);
    match Encoding::from_headers(headers) {
        Ok(source)
            if client_reads
                && method_known
                && !trailers_only
                && crate::grpc::is_grpc(headers)
                && source != Encoding::Bloscar =>
        {
            headers.insert(GRPC_ENCODING, HeaderValue::from_static(BLOSCAR));
            BodyPlan::Encode { source }
        }
        _ => BodyPlan::Pass,
    }
}

/// A body in `bloscar` is decoded, and the app sees no `grpc-encoding`.
fn decode_plan(headers: &mut HeaderMap) -> BodyPlan {
    if Encoding::from_headers(headers) == Ok(Encoding::Bloscar) {
        headers.remove(GRPC_ENCODING);
        BodyPlan::Decode
    } else {
        BodyPlan::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::encoding::GRPC_ACCEPT_ENCODING;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map.insert("content-type", HeaderValue::from_static("application/grpc"));
        map
    }

    fn accept(map: &HeaderMap) -> Option<&str> {
        map.get(GRPC_ACCEPT_ENCODING).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn outbound_encodes_only_for_a_peer_that_reads_bloscar() {
        let mut map = headers(&[("grpc-accept-encoding", "gzip")]);
        assert_eq!(outbound_request(&mut map, false, true), BodyPlan::Pass);
        assert_eq!(accept(&map), Some("gzip,bloscar"));
        assert!(map.get(GRPC_ENCODING).is_none());

        let mut map = headers(&[("grpc-encoding", "gzip")]);
        assert_eq!(
            outbound_request(&mut map, true, true),
            BodyPlan::Encode {
                source: Encoding::Gzip
            }
        );
        assert_eq!(map.get(GRPC_ENCODING).unwrap(), "bloscar");

        let mut map = headers(&[]);
        assert_eq!(outbound_request(&mut map, true, false), BodyPlan::Pass);
        let mut map = headers(&[("grpc-encoding", "snappy")]);
        assert_eq!(outbound_request(&mut map, true, true), BodyPlan::Pass);
    }

    #[test]
    fn outbound_response_learns_the_peer_and_hides_the_token() {
        let mut map = headers(&[
            ("grpc-accept-encoding", "identity,bloscar"),
            ("grpc-encoding", "bloscar"),
        ]);
        assert_eq!(outbound_response(&mut map), (true, BodyPlan::Decode));
        assert_eq!(accept(&map), Some("identity"));
        assert!(map.get(GRPC_ENCODING).is_none());

        let mut map = headers(&[("grpc-accept-encoding", "gzip")]);
        assert_eq!(outbound_response(&mut map), (false, BodyPlan::Pass));
        assert_eq!(accept(&map), Some("gzip"));
    }

    #[test]
    fn inbound_keeps_app_encodings_from_the_server_when_a_sidecar_calls() {
        let mut map = headers(&[(
            "grpc-accept-encoding",
            "gzip, deflate,zstd,identity,bloscar",
        )]);
        assert_eq!(inbound_request(&mut map), (true, BodyPlan::Pass));
        assert_eq!(accept(&map), Some("identity"));

        // A client without a sidecar keeps what it asked for.
        let mut map = headers(&[("grpc-accept-encoding", "gzip,deflate")]);
        assert_eq!(inbound_request(&mut map), (false, BodyPlan::Pass));
        assert_eq!(accept(&map), Some("gzip,deflate"));

        let mut map = headers(&[
            ("grpc-accept-encoding", "bloscar"),
            ("grpc-encoding", "bloscar"),
        ]);
        assert_eq!(inbound_request(&mut map), (true, BodyPlan::Decode));
        assert!(accept(&map).is_none());
        assert!(map.get(GRPC_ENCODING).is_none());
    }

    #[test]
    fn inbound_response_encodes_only_what_the_client_side_reads() {
        let mut map = headers(&[]);
        assert_eq!(
            inbound_response(&mut map, true, true),
            BodyPlan::Encode {
                source: Encoding::Identity
            }
        );
        assert_eq!(accept(&map), Some("bloscar"));

        let mut map = headers(&[]);
        assert_eq!(inbound_response(&mut map, false, true), BodyPlan::Pass);
        assert_eq!(accept(&map), Some("bloscar"));

        let mut map = headers(&[("grpc-status", "0")]);
        assert_eq!(inbound_response(&mut map, true, true), BodyPlan::Pass);
    }
}
