//! The inbound listener's TLS: its certificate and key, and for mutual TLS the CA bundle
//! of client certificates and the allowed subject alternative names.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio_rustls::TlsAcceptor;

use super::reload::{Build, Reload, Reloading, Source};
use super::verify::AllowedSans;
use super::{TlsError, pem, provider};
use crate::config::InboundTls;
use crate::config::tls::{INBOUND_CERT, INBOUND_CLIENT_CA, INBOUND_KEY};

/// ALPN protocols the listener offers: HTTP/2 for gRPC, HTTP/1.1 for pass-through.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A TLS listener's configuration, rebuilt when its files change.
pub struct ServerTls {
    reloading: Reloading<ServerConfig>,
    mutual: bool,
}

impl ServerTls {
    /// Reads the files of `config` and builds the server configuration; an error names
    /// the variable of the file at fault.
    pub fn load(config: &InboundTls) -> Result<ServerTls, TlsError> {
        let mut sources = vec![
            Source {
                variable: INBOUND_CERT.name,
                path: config.cert.clone(),
            },
            Source {
                variable: INBOUND_KEY.name,
                path: config.key.clone(),
            },
        ];
        if let Some(ca) = &config.client_ca {
            sources.push(Source {
                variable: INBOUND_CLIENT_CA.name,
                path: ca.clone(),
            });
        }
        let build = builder(config.clone());
        Ok(ServerTls {
            reloading: Reloading::load(sources, build)?,
            mutual: config.client_ca.is_some(),
        })
    }

    /// The acceptor for a new connection, with what a look at the files found.
    pub fn acceptor(&self) -> (TlsAcceptor, Reload) {
        let (config, reload) = self.reloading.current();
        (TlsAcceptor::from(config), reload)
    }

    /// Whether client certificates are required.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// The files the configuration comes from, for log lines.
    pub fn paths(&self) -> Vec<String> {
        self.reloading.paths()
    }
}

fn builder(config: InboundTls) -> Build<ServerConfig> {
    let InboundTls {
        cert,
        key,
        client_ca,
        allowed_sans,
    } = config;
    Box::new(move |contents: &[Vec<u8>]| {
        let certs = pem::certificates(INBOUND_CERT.name, &cert, &contents[0])?;
        let private_key = pem::private_key(INBOUND_KEY.name, &key, &contents[1])?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::content(INBOUND_CERT.name, &cert, e))?;
        let builder = match &client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                builder.with_client_cert_verifier(client_verifier(ca, &contents[2], &allowed_sans)?)
            }
        };
        let mut server = builder
            .with_single_cert(certs, private_key)
            .map_err(|e| key_error(&key, &cert, e))?;
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(server)
    })
}

/// Client certificates must chain to the CAs in `bundle` (the contents of `path`) and,
/// if `allowed` is not empty, carry one of its names.
fn client_verifier(
    path: &Path,
    bundle: &[u8],
    allowed: &[String],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = pem::roots(INBOUND_CLIENT_CA.name, path, bundle)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::content(INBOUND_CLIENT_CA.name, path, e))?;
    if allowed.is_empty() {
        Ok(verifier)
    } else {
        Ok(Arc::new(AllowedSans::new(verifier, allowed.to_vec())))
    }
}

/// A key that rustls refuses: most often one that is not the certificate's.
fn key_error(key: &Path, cert: &Path, e: rustls::Error) -> TlsError {
    TlsError::content(
        INBOUND_KEY.name,
        key,
        format!(
            "cannot be used with the certificate in {}: {e}",
            cert.display()
        ),
    )
}
