//! TLS on the hop between the sidecars (rustls with the ring provider).
//!
//! The inbound listener can serve TLS ([`ServerTls`]), optionally asking for a client
//! certificate from a CA bundle and restricting its subject alternative names; the
//! outbound side can dial its forward address with TLS ([`ClientTls`]), verifying the
//! server against a CA bundle and a server name, and presenting a client certificate.
//! The loopback sides (app to sidecar) stay cleartext.
//!
//! Certificates, keys and CA bundles come from PEM files, as Kubernetes mounts a TLS
//! Secret (cert-manager renews them in place). [`reload`] looks at the files again at
//! most once per [`reload::CHECK_INTERVAL`] when a connection is made, and the next
//! handshake uses the new ones; new files that do not work together are refused with a
//! log line, and the previous ones stay in use.
//!
//! A handshake that fails is classified into a bounded set of reasons
//! ([`failure::classify`]) for `bloscar_tls_handshake_failures_total`.

mod client;
pub mod failure;
mod pem;
pub mod reload;
mod san;
mod server;
mod stream;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use client::{Alpn, ClientTls};
pub use server::ServerTls;
pub use stream::HopStream;

/// A TLS file that cannot be used: one line naming the variable that points to it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read (missing, unreadable, too large).
    #[error("{variable}: cannot read {}: {problem}", path.display())]
    Read {
        /// The configuration variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// The file's contents are not what the variable needs.
    #[error("{variable}: {}: {problem}", path.display())]
    Content {
        /// The configuration variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl TlsError {
    /// The variable at fault, for logs.
    pub fn variable(&self) -> &'static str {
        match self {
            TlsError::Read { variable, .. } | TlsError::Content { variable, .. } => variable,
        }
    }

    pub(crate) fn content(variable: &'static str, path: &Path, problem: impl ToString) -> Self {
        TlsError::Content {
            variable,
            path: path.to_owned(),
            problem: problem.to_string(),
        }
    }
}

/// TLS on one proxy listener's side of the hop.
#[derive(Clone, Default)]
pub enum HopTls {
    /// Cleartext (HTTP/2 with prior knowledge, or HTTP/1.1).
    #[default]
    Off,
    /// The listener serves TLS (the inbound, which the peer sidecar connects to).
    Serve(Arc<ServerTls>),
    /// The upstream connections are TLS (the outbound, dialing the peer sidecar).
    Dial(Arc<ClientTls>),
}

impl std::fmt::Debug for HopTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HopTls::Off => "Off",
            HopTls::Serve(_) => "Serve",
            HopTls::Dial(_) => "Dial",
        })
    }
}

/// The rustls provider every configuration uses: ring, which builds with a C compiler
/// alone.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
