//! The outbound side's TLS to the peer sidecar: the CA bundle and name the server must
//! prove, and for mutual TLS the client certificate presented.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::reload::{Build, Reload, Reloading, Source};
use super::{TlsError, pem, provider};
use crate::config::OutboundTls;
use crate::config::tls::{OUTBOUND_CA, OUTBOUND_CERT, OUTBOUND_KEY, OUTBOUND_SERVER_NAME};

/// The protocol a connection is for, offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 (gRPC).
    H2,
    /// HTTP/1.1 (pass-through).
    Http1,
}

/// A client configuration per protocol offered.
struct Configs {
    h2: Arc<ClientConfig>,
    http1: Arc<ClientConfig>,
}

/// The TLS of connections to the peer sidecar, rebuilt when its files change.
pub struct ClientTls {
    reloading: Reloading<Configs>,
    server_name: ServerName<'static>,
}

impl ClientTls {
    /// Reads the files of `config` and builds the client configuration. The server name
    /// is the configured one, or the host of `forward` (`host:port`).
    pub fn load(config: &OutboundTls, forward: &str) -> Result<ClientTls, TlsError> {
        let server_name = server_name(config.server_name.as_deref(), forward)?;
        let mut sources = vec![Source {
            variable: OUTBOUND_CA.name,
            path: config.ca.clone(),
        }];
        if let Some((cert, key)) = &config.client_cert {
            sources.push(Source {
                variable: OUTBOUND_CERT.name,
                path: cert.clone(),
            });
            sources.push(Source {
                variable: OUTBOUND_KEY.name,
                path: key.clone(),
            });
        }
        Ok(ClientTls {
            reloading: Reloading::load(sources, builder(config.clone()))?,
            server_name,
        })
    }

    /// The connector for a new connection offering `alpn`, with what a look at the files
    /// found.
    pub fn connector(&self, alpn: Alpn) -> (TlsConnector, Reload) {
        let (configs, reload) = self.reloading.current();
        let config = match alpn {
            Alpn::H2 => &configs.h2,
            Alpn::Http1 => &configs.http1,
        };
        (TlsConnector::from(Arc::clone(config)), reload)
    }

    /// The name the server's certificate must be valid for.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// The files the configuration comes from, for log lines.
    pub fn paths(&self) -> Vec<String> {
        self.reloading.paths()
    }
}

/// `configured`, or the host of `forward` without its port (and brackets).
fn server_name(configured: Option<&str>, forward: &str) -> Result<ServerName<'static>, TlsError> {
    let name = match configured {
        Some(name) => name,
        None => {
            let host = forward.rsplit_once(':').map_or(forward, |(host, _)| host);
            host.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
        }
    };
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::Content {
        variable: OUTBOUND_SERVER_NAME.name,
        path: Path::new(name).to_owned(),
        problem: "not a DNS name or IP address a certificate can be valid for; set \
                  BLOSCAR_OUTBOUND_TLS_SERVER_NAME"
            .to_owned(),
    })
}

fn builder(config: OutboundTls) -> Build<Configs> {
    let OutboundTls {
        ca, client_cert, ..
    } = config;
    Box::new(move |contents: &[Vec<u8>]| {
        let roots = pem::roots(OUTBOUND_CA.name, &ca, &contents[0])?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::content(OUTBOUND_CA.name, &ca, e))?
            .with_root_certificates(roots);
        let config = match &client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = pem::certificates(OUTBOUND_CERT.name, cert, &contents[1])?;
                let private_key = pem::private_key(OUTBOUND_KEY.name, key, &contents[2])?;
                builder
                    .with_client_auth_cert(certs, private_key)
                    .map_err(|e| {
                        TlsError::content(
                            OUTBOUND_KEY.name,
                            key,
                            format!(
                                "cannot be used with the certificate in {}: {e}",
                                cert.display()
                            ),
                        )
                    })?
            }
        };
        let with_alpn = |protocol: &[u8]| {
            let mut config = config.clone();
            config.alpn_protocols = vec![protocol.to_vec()];
            Arc::new(config)
        };
        Ok(Configs {
            h2: with_alpn(b"h2"),
            http1: with_alpn(b"http/1.1"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_defaults_to_the_forward_host() {
        let name =
            |configured, forward| server_name(configured, forward).map(|n| n.to_str().into_owned());
        assert_eq!(name(None, "peer.ns.svc:9440").unwrap(), "peer.ns.svc");
        assert_eq!(name(None, "10.1.2.3:9440").unwrap(), "10.1.2.3");
        assert_eq!(name(None, "[::1]:9440").unwrap(), "::1");
        assert_eq!(
            name(Some("other.example"), "peer:1").unwrap(),
            "other.example"
        );
    }
}
