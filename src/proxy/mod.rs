//! The sidecar: listeners (HTTP/2 on h2, HTTP/1.1 on hyper) and the upstream client
//! around the bloscar layer.
//!
//! Contract:
//! `pub async fn serve(listener: tokio::net::TcpListener, settings: ProxySettings,
//!     metrics: Arc<Metrics>, shutdown: impl Future<Output = ()> + Send, grace: Duration)
//!     -> io::Result<()>`
//! serves until `shutdown` resolves, then stops accepting, sends GOAWAY, and returns once
//! in-flight streams finish or `grace` has passed.

mod accept;
mod activity;
mod connection;
mod h2_server;
mod headers;
mod limits;
mod linger;
mod opening;
mod pump;
mod resets;
mod secure;
mod server;
mod turn_write;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use crate::MessageCodec;
use crate::budget::MemoryBudget;
use crate::layer::{Role, UnknownPeer};
use crate::tls::HopTls;

pub use connection::WithConnection;
pub use headers::strip_hop_by_hop;
pub use limits::{
    DESCRIPTORS_PER_CONNECTION, ListenerLimits, RESERVED_DESCRIPTORS, connection_limit,
    open_file_limit,
};

/// HTTP/2 flow-control window per stream, both ways: a 4 MiB window keeps a 1 Gbit/s
/// link with 30 ms of round trip busy, and bounds what one stream can have in flight.
const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 flow-control window per connection: several large streams at once.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest DATA frame: large frames cost fewer wake-ups per megabyte than h2's 16 KiB
/// default, and stay well below the windows.
const MAX_FRAME: u32 = 256 << 10;
/// Bytes h2 buffers per stream for sending before the body is asked for more: enough to
/// keep a stream window's worth in flight, and what bounds the memory a client that does
/// not read its responses can make one stream hold.
const SEND_BUFFER: usize = 2 << 20;
pub use server::serve;
pub use upstream::{
    DialTls, H2Body, ResolveError, ResolveSettings, Route, Upstream, UpstreamBody, UpstreamError,
};

/// Everything one proxy listener needs.
#[derive(Clone)]
pub struct ProxySettings {
    /// Which side of the link this listener serves.
    pub role: Role,
    /// `host:port` of the upstream: the local app (inbound) or the peer sidecar (outbound);
    /// requests are spread over the addresses its name resolves to.
    pub forward: String,
    /// Shared encoder/decoder (locators, chooser, container limits).
    pub codec: Arc<MessageCodec>,
    /// Largest gRPC message buffered, after any decompression.
    pub max_message_bytes: usize,
    /// Largest KServe v2 REST inference body held whole.
    pub max_http_body_bytes: usize,
    /// Outbound: how to treat a peer whose capability is not known yet.
    pub unknown_peer: UnknownPeer,
    /// How the forward address's name is resolved into endpoints.
    pub resolve: ResolveSettings,
    /// How long a gRPC call may go without anything moving; `None`: no limit. The
    /// listener's layer takes it with
    /// [`BloscarLayer::stream_idle_timeout`](crate::BloscarLayer::stream_idle_timeout).
    pub stream_idle_timeout: Option<Duration>,
    /// Connection limit and timeouts of the listener.
    pub limits: ListenerLimits,
    /// What the listener's calls may hold in flight: the process's one budget, which
    /// every downstream connection gets a share of.
    pub memory: MemoryBudget,
    /// TLS on the hop side: the inbound listener serves it, the outbound dials it.
    pub hop_tls: HopTls,
}
