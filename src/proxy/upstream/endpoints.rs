//! The upstream's endpoints: the addresses its `host:port` stands for, each with what is
//! known of it (whether it reads `bloscar`, whether it is set aside), and the choice of
//! one for each request.
//!
//! The choice is power-of-two-choices over the requests in flight: two endpoints drawn
//! at random, the one with fewer requests in flight wins. A tie, which is every choice
//! when calls come one at a time, goes to the endpoint that was sent fewer requests, so
//! sequential calls spread evenly too. An endpoint that joins (or comes back from being
//! set aside) starts with the fewest sent of the others, not zero, so it gets its share
//! rather than every call until it has caught up.
//!
//! This is a small p2c of its own rather than tower's `balance::p2c` over `load`: the
//! endpoint has to be chosen before the bloscar layer sees the request, because whether
//! the layer encodes depends on what that endpoint reads, and tower's balancer picks
//! inside its own `poll_ready`, below the layer, out of reach. Its `Discover` plumbing
//! would also own the endpoints' services, where here each downstream connection keeps
//! connections of its own (see the module above) and only the load and health are shared.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;
use http::uri::Scheme;
use tokio::sync::watch;

use crate::layer::{PeerCapability, PeerEndpoint, UnknownPeer};
use crate::metrics::Metrics;

/// The first time an endpoint whose connection failed is set aside; each failure in a row
/// doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest an endpoint is set aside at once.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One address of the upstream.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    name: Arc<str>,
    target: Uri,
    peer: PeerEndpoint,
    in_flight: AtomicUsize,
    sent: AtomicU64,
    health: Mutex<Health>,
    /// Left the upstream's addresses: no new requests; its connections close once their
    /// streams are done.
    removed: AtomicBool,
}

#[derive(Default)]
struct Health {
    /// Connection failures in a row.
    failures: u32,
    /// Set aside until then.
    ejected_until: Option<Instant>,
}

impl Endpoint {
    fn new(addr: SocketAddr, unknown: UnknownPeer, sent: u64) -> Endpoint {
        let name: Arc<str> = Arc::from(addr.to_string());
        let target = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(name.as_ref())
            .path_and_query("/")
            .build()
            .expect("a socket address is an authority");
        Endpoint {
            addr,
            target,
            peer: PeerEndpoint {
                capability: Arc::new(PeerCapability::new(unknown)),
                name: Arc::clone(&name),
            },
            name,
            in_flight: AtomicUsize::new(0),
            sent: AtomicU64::new(sent),
            health: Mutex::new(Health::default()),
            removed: AtomicBool::new(false),
        }
    }

    /// The endpoint's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint's `ip:port`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `http://ip:port/`, what connections to the endpoint are made to.
    pub(crate) fn target(&self) -> &Uri {
        &self.target
    }

    /// What is known of the endpoint, for the layer.
    pub(crate) fn peer(&self) -> &PeerEndpoint {
        &self.peer
    }

    /// Whether the endpoint has left the upstream's addresses.
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ejected(&self, now: Instant) -> bool {
        self.health().ejected_until.is_some_and(|until| until > now)
    }

    /// Requests in flight, then requests sent: less is less loaded.
    fn load(&self) -> (usize, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }
}

/// Keeps one request counted in flight on an endpoint until dropped; the request may
/// move to another endpoint before it is sent ([`InFlight::move_to`]).
pub(crate) struct InFlight {
    endpoint: Mutex<Arc<Endpoint>>,
}

impl InFlight {
    fn start(endpoint: Arc<Endpoint>) -> InFlight {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        endpoint.sent.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: Mutex::new(endpoint),
        }
    }

    /// The endpoint the request goes to.
    pub(crate) fn endpoint(&self) -> Arc<Endpoint> {
        Arc::clone(&self.endpoint.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts the request on `next` instead.
    pub(crate) fn move_to(&self, next: Arc<Endpoint>) {
        next.in_flight.fetch_add(1, Ordering::Relaxed);
        next.sent.fetch_add(1, Ordering::Relaxed);
        let mut current = self.endpoint.lock().unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::replace(&mut *current, next);
        previous.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let endpoint = self.endpoint.get_mut().unwrap_or_else(|e| e.into_inner());
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints of one listener's upstream, shared by all its downstream connections.
pub(crate) struct Endpoints {
    listener: &'static str,
    unknown: UnknownPeer,
    metrics: Arc<Metrics>,
    /// The current endpoints (empty until the name first resolves), and a way to wait
    /// for them.
    set: watch::Sender<Arc<[Arc<Endpoint>]>>,
    /// Counts changes of the set, so that connections notice removed endpoints cheaply.
    generation: AtomicU64,
}

impl Endpoints {
    /// No endpoints yet.
    pub(crate) fn new(listener: &'static str, unknown: UnknownPeer, metrics: Arc<Metrics>) -> Self {
        Endpoints {
            listener,
            unknown,
            metrics,
            set: watch::Sender::new(Arc::from(Vec::new())),
            generation: AtomicU64::new(0),
        }
    }

    /// The listener's role name, for metrics.
    pub(crate) fn listener(&self) -> &'static str {
        self.listener
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current endpoints.
    pub(crate) fn current(&self) -> Arc<[Arc<Endpoint>]> {
        Arc::clone(&self.set.borrow())
    }

    /// Counts changes of the endpoints.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The upstream's addresses are now `addrs` (not empty): endpoints that stay keep
    /// what is known of them, new ones join, missing ones are removed.
    pub(crate) fn update(&self, addrs: &[SocketAddr]) {
        let old = self.current();
        // Newcomers start level with the least-sent endpoint that stays.
        let floor = old
            .iter()
            .filter(|e| addrs.contains(&e.addr))
            .map(|e| e.load().1)
            .min()
            .unwrap_or(0);
        let mut next: Vec<Arc<Endpoint>> = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            if next.iter().any(|e| e.addr == addr) {
                continue;
            }
            let endpoint = match old.iter().find(|e| e.addr == addr) {
                Some(kept) => Arc::clone(kept),
                None => {
                    tracing::info!(listener = self.listener, endpoint = %addr, "upstream endpoint added");
                    Arc::new(Endpoint::new(addr, self.unknown, floor))
                }
            };
            next.push(endpoint);
        }
        let removed: Vec<&Arc<Endpoint>> = old
            .iter()
            .filter(|e| !next.iter().any(|n| n.addr == e.addr))
            .collect();
        if removed.is_empty() && next.len() == old.len() {
            return;
        }
        for endpoint in &removed {
            endpoint.removed.store(true, Ordering::Release);
            tracing::info!(
                listener = self.listener,
                endpoint = %endpoint.addr,
                in_flight = endpoint.in_flight.load(Ordering::Relaxed),
                "upstream endpoint removed; its connections close once their calls are done"
            );
        }
        self.metrics.upstream().set_endpoints(
            self.listener,
            next.iter().map(|e| e.name()),
            removed.iter().map(|e| e.name()),
        );
        self.set.send_replace(Arc::from(next));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits up to `patience` for the first endpoints.
    pub(crate) async fn ready(&self, patience: Duration) -> bool {
        let mut set = self.set.subscribe();
        tokio::time::timeout(patience, set.wait_for(|s| !s.is_empty()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Chooses an endpoint for a request among those `allowed` lets through, and counts
    /// the request in flight there.
    pub(crate) fn choose(&self, allowed: impl Fn(&Endpoint) -> bool) -> Option<InFlight> {
        self.pick(allowed).map(InFlight::start)
    }

    /// The less loaded of two endpoints drawn among those `allowed` lets through.
    /// Endpoints set aside are passed over while any other is allowed, so that an
    /// upstream whose every address fails is still tried.
    pub(crate) fn pick(&self, allowed: impl Fn(&Endpoint) -> bool) -> Option<Arc<Endpoint>> {
        let set = self.current();
        // One address (an IP address, or a name with one): nothing to choose.
        if let [only] = &*set {
            return allowed(only).then(|| Arc::clone(only));
        }
        let now = Instant::now();
        let allowed: Vec<&Arc<Endpoint>> = set.iter().filter(|e| allowed(e)).collect();
        let healthy: Vec<&Arc<Endpoint>> = allowed
            .iter()
            .copied()
            .filter(|e| !e.ejected(now))
            .collect();
        let pool = if healthy.is_empty() {
            &allowed
        } else {
            &healthy
        };
        let chosen = match pool.len() {
            0 => return None,
            1 => pool[0],
            n => {
                let a = random_below(n);
                let b = (a + 1 + random_below(n - 1)) % n;
                if pool[b].load() < pool[a].load() {
                    pool[b]
                } else {
                    pool[a]
                }
            }
        };
        Some(Arc::clone(chosen))
    }

    /// A connection to `endpoint` was made: it is no longer set aside.
    pub(crate) fn connected(&self, endpoint: &Endpoint) {
        let mut health = endpoint.health();
        if health.failures == 0 {
            return;
        }
        *health = Health::default();
        drop(health);
        // Back in the choice with the fewest sent of the others, not far behind them.
        let floor = self
            .current()
            .iter()
            .filter(|e| e.addr != endpoint.addr)
            .map(|e| e.load().1)
            .min();
        if let Some(floor) = floor {
            endpoint.sent.fetch_max(floor, Ordering::Relaxed);
        }
        tracing::info!(listener = self.listener, endpoint = %endpoint.addr, "upstream endpoint reachable again");
    }

    /// A connection to `endpoint` could not be made: it is set aside for a backoff that
    /// doubles with each failure in a row.
    pub(crate) fn failed(&self, endpoint: &Endpoint, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut health = endpoint.health();
        // Calls that failed together on one broken connection count once.
        if health.ejected_until.is_some_and(|until| until > now) {
            return;
        }
        health.failures = health.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (health.failures - 1).min(16))
            .min(MAX_BACKOFF);
        health.ejected_until = Some(now + backoff);
        drop(health);
        self.metrics
            .upstream()
            .record_ejection(self.listener, endpoint.name());
        tracing::warn!(
            listener = self.listener,
            endpoint = %endpoint.addr,
            backoff_ms = backoff.as_millis() as u64,
            %error,
            "upstream endpoint unreachable; set aside"
        );
    }
}

/// A number below `n` (> 0), from a per-thread xorshift seeded by the standard library's
/// random hasher keys: the choice needs spread, not secrecy.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().build_hasher().finish() | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x % n as u64) as usize
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addrs: &[&str]) -> Endpoints {
        let endpoints = Endpoints::new("outbound", UnknownPeer::Identity, Arc::new(Metrics::new()));
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        endpoints.update(&addrs);
        endpoints
    }

    #[test]
    fn sequential_choices_spread_evenly() {
        let set = endpoints(&["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..300 {
            let call = set.choose(|_| true).unwrap();
            *counts.entry(call.endpoint().addr).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        for (addr, count) in counts {
            assert!((95..=105).contains(&count), "{addr}: {count}");
        }
    }

    #[test]
    fn the_least_busy_of_two_wins_and_set_aside_endpoints_are_passed_over() {
        let set = endpoints(&["10.0.0.1:1", "10.0.0.2:1"]);
        let busy = set.choose(|_| true).unwrap();
        let other = set.choose(|_| true).unwrap();
        assert_ne!(busy.endpoint().addr, other.endpoint().addr);
        drop(other);
        // One is busy: the other takes every call while the first stays in flight.
        for _ in 0..20 {
            assert_ne!(
                set.choose(|_| true).unwrap().endpoint().addr,
                busy.endpoint().addr
            );
        }
        set.failed(&busy.endpoint(), &"refused");
        let idle = busy.endpoint();
        drop(busy);
        for _ in 0..20 {
            assert_ne!(set.choose(|_| true).unwrap().endpoint().addr, idle.addr);
        }
        // Only a set-aside endpoint allowed: it is tried all the same.
        let only = set.choose(|e| e.addr == idle.addr).unwrap();
        assert_eq!(only.endpoint().addr, idle.addr);
    }

    #[test]
    fn updates_keep_known_endpoints_and_remove_missing_ones() {
        let set = endpoints(&["10.0.0.1:1", "10.0.0.2:1"]);
        let first = Arc::clone(&set.current()[0]);
        first.peer().capability.learn(true);
        set.update(&["10.0.0.1:1".parse().unwrap(), "10.0.0.3:1".parse().unwrap()]);
        let now = set.current();
        assert!(Arc::ptr_eq(&now[0], &first));
        assert!(now[0].peer().capability.reads_bloscar());
        assert_eq!(now[1].addr.to_string(), "10.0.0.3:1");
        assert_eq!(set.generation(), 2);
    }
}
