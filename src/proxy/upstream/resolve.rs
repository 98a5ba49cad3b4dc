//! Keeps the upstream's endpoints up to date with what its name resolves to.
//!
//! An IP address is its own one endpoint and is never resolved. A name (a Kubernetes
//! headless Service has one address per ready pod) is resolved at start-up and again and
//! again while the listener runs, with the name servers, search domains and options of
//! `/etc/resolv.conf` (and `/etc/hosts`), or with one name server given instead
//! (`BLOSCAR_OUTBOUND_NAMESERVER`). A name is looked up as A records, and as AAAA records
//! only when it has no A record, so a dual-stack name does not add addresses the peer may
//! not listen on.
//!
//! It is resolved again when its answer's TTL has passed, but at most the configured
//! interval after the last resolution and at least [`MIN_INTERVAL`] after it, so a TTL of
//! zero does not turn into a stream of queries. An answer that fails or holds no address
//! keeps the endpoints known before: pods that are briefly not ready are better tried
//! (and set aside if they fail) than none at all.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::endpoints::Endpoints;
use crate::log_limit::{LogSite, warn_limited};

/// The shortest time between two resolutions of a name.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One failed resolution after another would log one line each.
static RESOLVE_FAILED: LogSite = LogSite::new("proxy_resolve_failed");

/// How a listener resolves the name it forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveSettings {
    /// The longest time between two resolutions (the answer's TTL may make it shorter).
    pub interval: Duration,
    /// A name server to ask instead of those of `/etc/resolv.conf`.
    pub nameserver: Option<SocketAddr>,
}

impl Default for ResolveSettings {
    fn default() -> Self {
        ResolveSettings {
            interval: Duration::from_secs(30),
            nameserver: None,
        }
    }
}

/// Why a name cannot be resolved at all.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The system's resolver configuration does not read.
    #[error("cannot read the resolver configuration (/etc/resolv.conf): {0}")]
    SystemConfig(String),
    /// The resolver does not build from it.
    #[error("cannot set up the DNS resolver: {0}")]
    Build(String),
}

/// Fills `endpoints` with `host:port`'s addresses, now for an IP address, else from a
/// task that resolves `host` for as long as `endpoints` is in use.
pub(crate) fn start(
    host: &str,
    port: u16,
    settings: ResolveSettings,
    endpoints: &Arc<Endpoints>,
) -> Result<(), ResolveError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        endpoints.update(&[SocketAddr::new(ip, port)]);
        return Ok(());
    }
    let resolver = resolver(settings.nameserver)?;
    // A fully qualified name is asked as written, without the search domains.
    let name = host.to_owned();
    let weak = Arc::downgrade(endpoints);
    tokio::spawn(keep_resolving(
        resolver,
        name,
        port,
        settings.interval,
        weak,
    ));
    Ok(())
}

fn resolver(nameserver: Option<SocketAddr>) -> Result<TokioResolver, ResolveError> {
    let (config, mut options) = match hickory_resolver::system_conf::read_system_conf() {
        Ok(system) => system,
        // With a name server given, the system's configuration is not needed.
        Err(_) if nameserver.is_some() => (ResolverConfig::default(), ResolverOpts::default()),
        Err(err) => return Err(ResolveError::SystemConfig(err.to_string())),
    };
    let config = match nameserver {
        None => config,
        Some(server) => {
            let (domain, search, _) = config.into_parts();
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            ResolverConfig::from_parts(domain, search, vec![server])
        }
    };
    options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = options;
    builder
        .build()
        .map_err(|err| ResolveError::Build(err.to_string()))
}

async fn keep_resolving(
    resolver: TokioResolver,
    name: String,
    port: u16,
    interval: Duration,
    endpoints: Weak<Endpoints>,
) {
    let interval = interval.max(MIN_INTERVAL);
    let mut retry = MIN_INTERVAL;
    loop {
        let wait = match resolver.lookup_ip(name.as_str()).await {
            Ok(answer) => {
                let addrs: Vec<SocketAddr> =
                    answer.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                let Some(endpoints) = endpoints.upgrade() else {
                    return;
                };
                if addrs.is_empty() {
                    warn_limited!(RESOLVE_FAILED, name = %name, "the forward name resolved to no address; keeping the endpoints known before");
                } else {
                    endpoints.update(&addrs);
                }
                retry = MIN_INTERVAL;
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                ttl.clamp(MIN_INTERVAL, interval)
            }
            Err(err) => {
                if endpoints.strong_count() == 0 {
                    return;
                }
                warn_limited!(RESOLVE_FAILED, name = %name, error = %err, "cannot resolve the forward name; keeping the endpoints known before");
                // Soon at first, so that a sidecar that starts before its DNS answers
                // does not wait a whole interval; then backing off to the interval.
                let wait = retry.min(interval);
                retry = retry.saturating_mul(2);
                wait
            }
        };
        tokio::time::sleep(wait).await;
        if endpoints.strong_count() == 0 {
            return;
        }
    }
}
