//! What the outbound side has learned of its peer: whether it reads `bloscar`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::UnknownPeer;

const UNKNOWN: u8 = 0;
const READS_BLOSCAR: u8 = 1;
const PLAIN: u8 = 2;

/// The peer's capability, learned from `grpc-accept-encoding` on its responses.
#[derive(Debug)]
pub struct PeerCapability {
    state: AtomicU8,
    unknown: UnknownPeer,
}

impl PeerCapability {
    /// Nothing learned yet; until then, `unknown` decides.
    pub fn new(unknown: UnknownPeer) -> Self {
        PeerCapability {
            state: AtomicU8::new(UNKNOWN),
            unknown,
        }
    }

    /// Whether requests may be encoded for the peer now.
    pub fn reads_bloscar(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            READS_BLOSCAR => true,
            PLAIN => false,
            _ => self.unknown == UnknownPeer::Encode,
        }
    }

    /// Records what a response said; true when this changes what was known.
    pub fn learn(&self, reads_bloscar: bool) -> bool {
        let state = if reads_bloscar { READS_BLOSCAR } else { PLAIN };
        self.state.swap(state, Ordering::Relaxed) != state
    }
}

/// The peer endpoint a request goes to, for a proxy that spreads calls over several
/// endpoints of the peer: put in the request's extensions before the layer sees it, it
/// makes the layer encode by what that endpoint is known to read and learn its answer
/// there, instead of in the one capability the layer keeps for the whole peer. An
/// upstream that sent the call elsewhere puts the endpoint that answered in the
/// response's extensions.
#[derive(Debug, Clone)]
pub struct PeerEndpoint {
    /// What is known of the endpoint.
    pub capability: Arc<PeerCapability>,
    /// The endpoint's address, for logs.
    pub name: Arc<str>,
}
