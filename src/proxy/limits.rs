//! What one proxy listener allows a client: connections, time to start, time idle, and
//! the HTTP/2 settings that bound what one connection can make the sidecar hold.

use std::time::Duration;

use crate::layer::Role;

/// Connection limits and timeouts of one proxy listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Most client connections open at once; a connection beyond it is closed at once.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface and its SETTINGS frame (or
    /// its first bytes of HTTP/1), and an HTTP/1 client to send each request's headers.
    pub handshake_timeout: Duration,
    /// A connection with no call open for this long is closed (GOAWAY for HTTP/2).
    pub idle_timeout: Duration,
}

impl ListenerLimits {
    /// The default of `BLOSCAR_MAX_CONNECTIONS`, before the open-file limit lowers it.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// The default of `BLOSCAR_HANDSHAKE_TIMEOUT_SECS`.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default of `BLOSCAR_CONNECTION_IDLE_TIMEOUT_SECS`.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Streams one client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
///
/// gRPC clients carry every call of a channel over one connection per endpoint and queue
/// calls beyond the server's limit, so a low limit becomes a hidden queue in front of a
/// busy client app; gRPC servers themselves default to no limit. RFC 9113 asks for at
/// least 100; hyper's default is 200. 1024 leaves batching clients room while bounding the
/// stream table a hostile client can make the sidecar keep: each stream holds at most
/// one header block ([`MAX_HEADER_LIST_SIZE`]) and what the flow-control windows let in.
pub(super) const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Streams a client may reset before the server has accepted them, before the connection
/// is closed with GOAWAY ENHANCE_YOUR_CALM.
///
/// This is the "rapid reset" attack (CVE-2023-44487): open and reset streams in a loop,
/// so that the server starts work it never finishes. The server accepts a stream as soon
/// as its headers are read, so a legitimate client that cancels calls never has more
/// than a handful reset before acceptance; 20 is h2's own choice after the attack, set
/// here so that a dependency update cannot change it unnoticed.
pub(super) const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// [`MAX_PENDING_ACCEPT_RESET_STREAMS`] at the inbound, whose clients are mostly peer
/// sidecars: 200.
///
/// One outbound's connection carries the calls of every client behind it, and relays
/// each cancellation. When the inbound is busy, the HEADERS and RST_STREAM of calls that
/// clients cancelled quickly arrive together and count as resets before acceptance:
/// the limit that suits one client would close the connection that all of them share.
/// The outbound already holds each of its clients to the strict limit and to the
/// premature-reset guard (`resets.rs`), so the inbound allows ten times as many; a
/// pending reset stream holds at most one header block, so this bounds a direct
/// attacker to a few MiB per connection.
pub(super) const INBOUND_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 200;

/// The pending-accept reset limit of a listener with `role`.
pub(super) fn max_pending_accept_reset_streams(role: Role) -> usize {
    match role {
        Role::Outbound => MAX_PENDING_ACCEPT_RESET_STREAMS,
        Role::Inbound => INBOUND_MAX_PENDING_ACCEPT_RESET_STREAMS,
    }
}

/// Streams the server may reset because of the client's own errors (malformed headers,
/// streams beyond the concurrency limit, oversized header blocks) over a connection's
/// life, before the connection is closed with GOAWAY ENHANCE_YOUR_CALM.
///
/// It bounds the work a client can cause by provoking resets rather than sending them
/// (RUSTSEC-2024-0003, and 2025's "MadeYouReset"). A well-behaved gRPC client never provokes one; the
/// count never decreases, and the idle timeout recycles long-lived connections, so
/// hyper's 1024 is kept, explicitly.
pub(super) const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Largest header block of a request (SETTINGS_MAX_HEADER_LIST_SIZE): 64 KiB.
///
/// gRPC stacks accept 8 KiB (Java), 8 KiB soft and 16 KiB hard (C-core) or more (Go) of
/// metadata; the sidecar must never be the narrower limit between two apps that agree,
/// so it allows four times C-core's hard limit, the order of Envoy's 60 KiB. A larger
/// header block gets `431` and a reset of that stream; the connection stays up.
pub(super) const MAX_HEADER_LIST_SIZE: u32 = 64 << 10;

/// HTTP/2 pings to clients on connections that received nothing for this long, to find
/// clients that vanished without closing (a node that died, a NAT that forgot the flow).
///
/// gRPC clients do not police pings from servers (only servers count "ping strikes"),
/// so this neither costs a gRPC client its connection nor needs its cooperation.
pub(super) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// A client that does not acknowledge a ping within this time is gone: its connection is
/// closed and its streams end.
pub(super) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Descriptors kept back from the proxy listeners: 16 for the process itself (standard
/// streams, the reactor, the listeners, the signal pipe), 16 for the admin listener's
/// connections (see `admin::MAX_CONNECTIONS`), and 32 for upstream connections that are
/// not tied to one client connection (each listener's shared HTTP/2 connection, and its
/// replacement while the old one drains).
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Descriptors one client connection may cost: its own, and an upstream connection when
/// it speaks HTTP/1 (an HTTP/1 request in flight holds an upstream connection of its
/// own, up to the upstream client's cap of 256; HTTP/2 calls share one connection).
pub const DESCRIPTORS_PER_CONNECTION: u64 = 2;

/// The process's soft limit on open descriptors (RLIMIT_NOFILE); `None` when it cannot
/// be read or is unlimited.
pub fn open_file_limit() -> Option<u64> {
    let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (soft != rlimit::INFINITY).then_some(soft)
}

/// The connection limit of each of `listeners` proxy listeners: `configured`, lowered so
/// that all of them at their limit, with an upstream connection each, still leave
/// [`RESERVED_DESCRIPTORS`] of `open_file_limit` free; at least 1.
pub fn connection_limit(
    configured: usize,
    open_file_limit: Option<u64>,
    listeners: usize,
) -> usize {
    let Some(limit) = open_file_limit else {
        return configured;
    };
    let per_listener = DESCRIPTORS_PER_CONNECTION * (listeners.max(1) as u64);
    let budget = limit.saturating_sub(RESERVED_DESCRIPTORS) / per_listener;
    let budget = usize::try_from(budget).unwrap_or(usize::MAX).max(1);
    configured.min(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_lowers_the_configured_limit() {
        // 1024 descriptors, one listener: (1024 - 64) / 2.
        assert_eq!(connection_limit(10_000, Some(1024), 1), 480);
        // Two listeners share the budget.
        assert_eq!(connection_limit(10_000, Some(1024), 2), 240);
        // A generous limit leaves the configured value alone.
        assert_eq!(connection_limit(10_000, Some(1 << 20), 2), 10_000);
        assert_eq!(connection_limit(50, Some(1024), 1), 50);
        assert_eq!(connection_limit(10_000, None, 1), 10_000);
    }

    #[test]
    fn a_tiny_open_file_limit_still_allows_one_connection() {
        assert_eq!(connection_limit(10_000, Some(10), 1), 1);
        assert_eq!(connection_limit(10_000, Some(0), 2), 1);
    }

    #[test]
    fn the_open_file_limit_is_the_kernels_soft_limit() {
        // /proc/self/limits: "Max open files  <soft>  <hard>  files".
        let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
            return;
        };
        let soft = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("a Max open files line");
        let expected = soft.parse::<u64>().ok();
        assert_eq!(open_file_limit(), expected, "{soft}");
    }
}
