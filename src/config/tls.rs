//! The `BLOSCAR_*_TLS_*` variables: TLS on the hop between the sidecars, as plain data
//! (file paths and names). The files are read, and re-read when they change, by
//! [`crate::tls`] when the sidecar starts.
//!
//! Only combinations that make sense are accepted: a certificate needs its key, a client
//! CA (mutual TLS) needs the inbound's own certificate, an allowed-SAN list needs a client
//! CA, and the outbound's server name and client certificate need its CA bundle (which is
//! what turns TLS on for the outbound: it never dials TLS without verifying the peer).

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Variable, var};

/// `BLOSCAR_INBOUND_TLS_CERT`.
pub const INBOUND_CERT: Variable = var(
    "BLOSCAR_INBOUND_TLS_CERT",
    "(none: cleartext)",
    "a path to a PEM file: the certificate, then its intermediates",
    "inbound: serve TLS on the inbound listener with this certificate chain (e.g. a \
     mounted Kubernetes TLS Secret's tls.crt); re-read when the file changes",
);
/// `BLOSCAR_INBOUND_TLS_KEY`.
pub const INBOUND_KEY: Variable = var(
    "BLOSCAR_INBOUND_TLS_KEY",
    "(none; required with BLOSCAR_INBOUND_TLS_CERT)",
    "a path to a PEM file: a PKCS#8, PKCS#1 or SEC1 private key",
    "inbound: the private key of the certificate (e.g. tls.key); re-read when it changes",
);
/// `BLOSCAR_INBOUND_TLS_CLIENT_CA`.
pub const INBOUND_CLIENT_CA: Variable = var(
    "BLOSCAR_INBOUND_TLS_CLIENT_CA",
    "(none: no client certificate asked for)",
    "a path to a PEM file of one or more CA certificates",
    "inbound: mutual TLS: every peer must present a client certificate issued by one of \
     these CAs (e.g. ca.crt); needs BLOSCAR_INBOUND_TLS_CERT; re-read when it changes",
);
/// `BLOSCAR_INBOUND_TLS_ALLOWED_SANS`.
pub const INBOUND_ALLOWED_SANS: Variable = var(
    "BLOSCAR_INBOUND_TLS_ALLOWED_SANS",
    "(empty: any certificate of the client CA)",
    "names separated by commas, each a DNS name or a URI (e.g. a SPIFFE ID); a trailing * \
     matches any rest, e.g. spiffe://cluster.local/ns/ml/*",
    "inbound: mutual TLS: a client certificate is accepted only if one of its subject \
     alternative names (DNS or URI) is in this list; needs BLOSCAR_INBOUND_TLS_CLIENT_CA",
);
/// `BLOSCAR_OUTBOUND_TLS_CA`.
pub const OUTBOUND_CA: Variable = var(
    "BLOSCAR_OUTBOUND_TLS_CA",
    "(none: cleartext)",
    "a path to a PEM file of one or more CA certificates",
    "outbound: dial the forward address with TLS, and accept only a server certificate \
     issued by one of these CAs (for public CAs, the system bundle, e.g. \
     /etc/ssl/certs/ca-certificates.crt); re-read when it changes",
);
/// `BLOSCAR_OUTBOUND_TLS_SERVER_NAME`.
pub const OUTBOUND_SERVER_NAME: Variable = var(
    "BLOSCAR_OUTBOUND_TLS_SERVER_NAME",
    "(the host of BLOSCAR_OUTBOUND_FORWARD)",
    "a DNS name or an IP address",
    "outbound: the name the server certificate must be valid for (and the SNI sent); \
     needs BLOSCAR_OUTBOUND_TLS_CA",
);
/// `BLOSCAR_OUTBOUND_TLS_CERT`.
pub const OUTBOUND_CERT: Variable = var(
    "BLOSCAR_OUTBOUND_TLS_CERT",
    "(none: no client certificate)",
    "a path to a PEM file: the certificate, then its intermediates",
    "outbound: mutual TLS: the client certificate chain presented to the peer; needs \
     BLOSCAR_OUTBOUND_TLS_KEY and BLOSCAR_OUTBOUND_TLS_CA; re-read when it changes",
);
/// `BLOSCAR_OUTBOUND_TLS_KEY`.
pub const OUTBOUND_KEY: Variable = var(
    "BLOSCAR_OUTBOUND_TLS_KEY",
    "(none; required with BLOSCAR_OUTBOUND_TLS_CERT)",
    "a path to a PEM file: a PKCS#8, PKCS#1 or SEC1 private key",
    "outbound: the private key of the client certificate; re-read when it changes",
);

/// The inbound listener's TLS (`BLOSCAR_INBOUND_TLS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTls {
    /// PEM certificate chain served.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// Subject alternative names (DNS or URI) of which a client certificate must carry
    /// one; empty: any certificate of the client CA. A trailing `*` matches any rest.
    pub allowed_sans: Vec<String>,
}

/// The outbound side's TLS to the peer sidecar (`BLOSCAR_OUTBOUND_TLS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundTls {
    /// PEM CA bundle that the server certificate must chain to.
    pub ca: PathBuf,
    /// The name the server certificate must be valid for; `None`: the forward host.
    pub server_name: Option<String>,
    /// PEM client certificate chain and key presented to the peer (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The TLS variables as `envy` reads them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTls {
    inbound_tls_cert: Option<String>,
    inbound_tls_key: Option<String>,
    inbound_tls_client_ca: Option<String>,
    inbound_tls_allowed_sans: Option<String>,
    outbound_tls_ca: Option<String>,
    outbound_tls_server_name: Option<String>,
    outbound_tls_cert: Option<String>,
    outbound_tls_key: Option<String>,
}

/// A path variable: any non-blank value (whether the file is there and readable is
/// checked when the sidecar loads it).
fn path(value: Option<String>) -> Option<PathBuf> {
    value
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

fn missing(v: Variable, because: &'static str) -> ConfigError {
    ConfigError::Missing {
        name: v.name,
        because,
        accepts: v.accepts,
    }
}

impl RawTls {
    /// The inbound TLS settings, if any.
    pub(super) fn inbound(&mut self) -> Result<Option<InboundTls>, ConfigError> {
        let cert = path(self.inbound_tls_cert.take());
        let key = path(self.inbound_tls_key.take());
        let client_ca = path(self.inbound_tls_client_ca.take());
        let allowed_sans = match self.inbound_tls_allowed_sans.take() {
            None => Vec::new(),
            Some(list) => parse_sans(&list).ok_or_else(|| ConfigError::Invalid {
                name: INBOUND_ALLOWED_SANS.name,
                value: list.clone(),
                accepts: INBOUND_ALLOWED_SANS.accepts,
            })?,
        };
        if !allowed_sans.is_empty() && client_ca.is_none() {
            return Err(missing(
                INBOUND_CLIENT_CA,
                "BLOSCAR_INBOUND_TLS_ALLOWED_SANS is set",
            ));
        }
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(InboundTls {
                cert,
                key,
                client_ca,
                allowed_sans,
            })),
            (Some(_), None) => Err(missing(INBOUND_KEY, "BLOSCAR_INBOUND_TLS_CERT is set")),
            (None, Some(_)) => Err(missing(INBOUND_CERT, "BLOSCAR_INBOUND_TLS_KEY is set")),
            (None, None) if client_ca.is_some() => Err(missing(
                INBOUND_CERT,
                "BLOSCAR_INBOUND_TLS_CLIENT_CA is set",
            )),
            (None, None) => Ok(None),
        }
    }

    /// The outbound TLS settings, if any.
    pub(super) fn outbound(&mut self) -> Result<Option<OutboundTls>, ConfigError> {
        let ca = path(self.outbound_tls_ca.take());
        let server_name = match self.outbound_tls_server_name.take() {
            None => None,
            Some(name) => Some(server_name(&name).ok_or_else(|| ConfigError::Invalid {
                name: OUTBOUND_SERVER_NAME.name,
                value: name.clone(),
                accepts: OUTBOUND_SERVER_NAME.accepts,
            })?),
        };
        let cert = path(self.outbound_tls_cert.take());
        let key = path(self.outbound_tls_key.take());
        let client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(missing(OUTBOUND_KEY, "BLOSCAR_OUTBOUND_TLS_CERT is set"));
            }
            (None, Some(_)) => {
                return Err(missing(OUTBOUND_CERT, "BLOSCAR_OUTBOUND_TLS_KEY is set"));
            }
            (None, None) => None,
        };
        match ca {
            Some(ca) => Ok(Some(OutboundTls {
                ca,
                server_name,
                client_cert,
            })),
            None if client_cert.is_some() => Err(missing(
                OUTBOUND_CA,
                "BLOSCAR_OUTBOUND_TLS_CERT is set (the server must be verified too)",
            )),
            None if server_name.is_some() => Err(missing(
                OUTBOUND_CA,
                "BLOSCAR_OUTBOUND_TLS_SERVER_NAME is set",
            )),
            None => Ok(None),
        }
    }
}

/// The allowed-SAN list: comma-separated, blanks around names ignored; `None` if a name
/// is empty or holds whitespace, or a `*` appears anywhere but at the end.
fn parse_sans(list: &str) -> Option<Vec<String>> {
    let list = list.trim();
    if list.is_empty() {
        return Some(Vec::new());
    }
    list.split(',')
        .map(str::trim)
        .map(|name| {
            let valid = !name.is_empty()
                && !name.chars().any(char::is_whitespace)
                && !name.trim_end_matches('*').contains('*');
            valid.then(|| name.to_owned())
        })
        .collect()
}

/// A server name rustls accepts: a DNS name or an IP address.
fn server_name(name: &str) -> Option<String> {
    let name = name.trim();
    rustls_pki_types::ServerName::try_from(name)
        .ok()
        .map(|_| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const CERT: (&str, &str) = ("BLOSCAR_INBOUND_TLS_CERT", "/tls/tls.crt");
    const KEY: (&str, &str) = ("BLOSCAR_INBOUND_TLS_KEY", "/tls/tls.key");
    const CLIENT_CA: (&str, &str) = ("BLOSCAR_INBOUND_TLS_CLIENT_CA", "/tls/ca.crt");
    const OUT: (&str, &str) = ("BLOSCAR_OUTBOUND_FORWARD", "peer.ns.svc:9440");
    const MODE: (&str, &str) = ("BLOSCAR_MODE", "outbound");
    const OUT_CA: (&str, &str) = ("BLOSCAR_OUTBOUND_TLS_CA", "/peer/ca.crt");

    #[test]
    fn off_unless_configured() {
        let c = config(&[]).unwrap();
        assert_eq!((c.inbound_tls, c.outbound_tls), (None, None));
    }

    #[test]
    fn inbound_tls_and_mutual_tls() {
        let c = config(&[CERT, KEY]).unwrap();
        assert_eq!(
            c.inbound_tls,
            Some(InboundTls {
                cert: "/tls/tls.crt".into(),
                key: "/tls/tls.key".into(),
                client_ca: None,
                allowed_sans: vec![],
            })
        );
        let c = config(&[
            CERT,
            KEY,
            CLIENT_CA,
            (
                "BLOSCAR_INBOUND_TLS_ALLOWED_SANS",
                "client.ml.svc,spiffe://cluster.local/ns/ml/*",
            ),
        ])
        .unwrap();
        let tls = c.inbound_tls.unwrap();
        assert_eq!(tls.client_ca, Some("/tls/ca.crt".into()));
        assert_eq!(
            tls.allowed_sans,
            ["client.ml.svc", "spiffe://cluster.local/ns/ml/*"]
        );
    }

    #[test]
    fn outbound_tls_and_mutual_tls() {
        let c = config(&[MODE, OUT, OUT_CA]).unwrap();
        assert_eq!(
            c.outbound_tls,
            Some(OutboundTls {
                ca: "/peer/ca.crt".into(),
                server_name: None,
                client_cert: None,
            })
        );
        let c = config(&[
            MODE,
            OUT,
            OUT_CA,
            ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", "inbound.ml.svc"),
            ("BLOSCAR_OUTBOUND_TLS_CERT", "/me/tls.crt"),
            ("BLOSCAR_OUTBOUND_TLS_KEY", "/me/tls.key"),
        ])
        .unwrap();
        let tls = c.outbound_tls.unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("inbound.ml.svc"));
        assert_eq!(
            tls.client_cert,
            Some(("/me/tls.crt".into(), "/me/tls.key".into()))
        );
    }

    #[test]
    fn incomplete_combinations_name_the_missing_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[CERT],
                "BLOSCAR_INBOUND_TLS_KEY: required when BLOSCAR_INBOUND_TLS_CERT is set",
            ),
            (
                &[KEY],
                "BLOSCAR_INBOUND_TLS_CERT: required when BLOSCAR_INBOUND_TLS_KEY is set",
            ),
            (
                &[CLIENT_CA],
                "BLOSCAR_INBOUND_TLS_CERT: required when BLOSCAR_INBOUND_TLS_CLIENT_CA is set",
            ),
            (
                &[CERT, KEY, ("BLOSCAR_INBOUND_TLS_ALLOWED_SANS", "a.example")],
                "BLOSCAR_INBOUND_TLS_CLIENT_CA: required when BLOSCAR_INBOUND_TLS_ALLOWED_SANS is set",
            ),
            (
                &[
                    CERT,
                    KEY,
                    CLIENT_CA,
                    ("BLOSCAR_INBOUND_TLS_ALLOWED_SANS", "a b"),
                ],
                "BLOSCAR_INBOUND_TLS_ALLOWED_SANS: invalid value \"a b\": expected names",
            ),
            (
                &[
                    MODE,
                    OUT,
                    ("BLOSCAR_OUTBOUND_TLS_CERT", "/c"),
                    ("BLOSCAR_OUTBOUND_TLS_KEY", "/k"),
                ],
                "BLOSCAR_OUTBOUND_TLS_CA: required when BLOSCAR_OUTBOUND_TLS_CERT is set",
            ),
            (
                &[MODE, OUT, OUT_CA, ("BLOSCAR_OUTBOUND_TLS_CERT", "/c")],
                "BLOSCAR_OUTBOUND_TLS_KEY: required when BLOSCAR_OUTBOUND_TLS_CERT is set",
            ),
            (
                &[MODE, OUT, OUT_CA, ("BLOSCAR_OUTBOUND_TLS_KEY", "/k")],
                "BLOSCAR_OUTBOUND_TLS_CERT: required when BLOSCAR_OUTBOUND_TLS_KEY is set",
            ),
            (
                &[MODE, OUT, ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", "a.example")],
                "BLOSCAR_OUTBOUND_TLS_CA: required when BLOSCAR_OUTBOUND_TLS_SERVER_NAME is set",
            ),
            (
                &[
                    MODE,
                    OUT,
                    OUT_CA,
                    ("BLOSCAR_OUTBOUND_TLS_SERVER_NAME", "not a name"),
                ],
                "BLOSCAR_OUTBOUND_TLS_SERVER_NAME: invalid value \"not a name\": expected a DNS name",
            ),
        ];
        for (pairs, expected) in cases {
            let line = config(pairs).unwrap_err().to_string();
            assert!(line.starts_with(expected), "{pairs:?}: {line}");
        }
    }

    #[test]
    fn san_lists() {
        assert_eq!(parse_sans(""), Some(vec![]));
        assert_eq!(
            parse_sans(" a.example , spiffe://td/ns/ml/* "),
            Some(vec![
                "a.example".to_owned(),
                "spiffe://td/ns/ml/*".to_owned()
            ])
        );
        assert_eq!(parse_sans("a,,b"), None);
        assert_eq!(parse_sans("a b"), None);
        assert_eq!(parse_sans("*.example"), None);
    }

    #[test]
    fn server_names() {
        assert_eq!(server_name("peer.ns.svc"), Some("peer.ns.svc".to_owned()));
        assert_eq!(server_name("10.0.0.1"), Some("10.0.0.1".to_owned()));
        assert_eq!(server_name("::1"), Some("::1".to_owned()));
        assert_eq!(server_name("not a name"), None);
    }
}
