//! What the outbound side has learned of its peer: whether it reads `bloscar`.

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
