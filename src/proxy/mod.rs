//! The sidecar: hyper HTTP/2 listeners and the upstream client around the bloscar layer.
//!
//! Contract:
//! `pub async fn serve(listener: tokio::net::TcpListener, settings: ProxySettings,
//!     metrics: Arc<Metrics>, shutdown: impl Future<Output = ()> + Send, grace: Duration)
//!     -> io::Result<()>`
//! serves until `shutdown` resolves, then stops accepting, sends GOAWAY, and returns once
//! in-flight streams finish or `grace` has passed.

mod headers;
mod server;
mod upstream;

use std::sync::Arc;

use crate::MessageCodec;
use crate::layer::{Role, UnknownPeer};

pub use headers::strip_hop_by_hop;
pub use server::serve;
pub use upstream::Upstream;

/// Everything one proxy listener needs.
#[derive(Clone)]
pub struct ProxySettings {
    /// Which side of the link this listener serves.
    pub role: Role,
    /// `host:port` of the upstream: the local app (inbound) or the peer sidecar (outbound).
    pub forward: String,
    /// Shared encoder/decoder (locators, chooser, container limits).
    pub codec: Arc<MessageCodec>,
    /// Largest gRPC message buffered, after any decompression.
    pub max_message_bytes: usize,
    /// Outbound: how to treat a peer whose capability is not known yet.
    pub unknown_peer: UnknownPeer,
}
