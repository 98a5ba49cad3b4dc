//! The upstream's endpoints: what each proxy listener forwarded to which address of its
//! upstream, what failed there, and how often an address was set aside.
//!
//! The `endpoint` label is an address the forward name resolved to, so its values are
//! bounded by the DNS answers; the series of an address that leaves the answers are
//! removed with it, so a Service whose pods come and go does not grow the registry.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    /// The proxy role of the listener: `inbound` or `outbound`.
    listener: &'static str,
    /// The endpoint's `ip:port`.
    endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// The per-endpoint metric families.
pub struct UpstreamMetrics {
    requests: Family<EndpointLabels, Counter>,
    errors: Family<EndpointLabels, Counter>,
    ejections: Family<EndpointLabels, Counter>,
    endpoints: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
}

impl UpstreamMetrics {
    /// Registers the families in `registry` (which gives them the `bloscar_` prefix).
    pub(super) fn register(registry: &mut Registry) -> UpstreamMetrics {
        let metrics = UpstreamMetrics {
            requests: Family::default(),
            errors: Family::default(),
            ejections: Family::default(),
            endpoints: Family::default(),
        };
        registry.register(
            "upstream_requests",
            "Requests sent to each endpoint (address) of the listener's upstream",
            metrics.requests.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests to each endpoint that failed before their answer began: no connection, \
             or the connection or stream broke",
            metrics.errors.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Times an endpoint was set aside because a connection to it failed; it is tried \
             again after a backoff",
            metrics.ejections.clone(),
        );
        registry.register(
            "upstream_endpoints",
            "Endpoints the listener's upstream has now (the addresses its name resolves to)",
            metrics.endpoints.clone(),
        );
        metrics
    }

    fn labels(listener: &'static str, endpoint: &str) -> EndpointLabels {
        EndpointLabels {
            listener,
            endpoint: endpoint.to_owned(),
        }
    }

    /// The endpoints of `listener` are now `endpoints`; `removed` are gone, and their
    /// series with them.
    pub fn set_endpoints<'a>(
        &self,
        listener: &'static str,
        endpoints: impl ExactSizeIterator<Item = &'a str>,
        removed: impl Iterator<Item = &'a str>,
    ) {
        let count = endpoints.len();
        for endpoint in endpoints {
            // Present from the start, so that a rate reads 0 rather than nothing.
            let labels = Self::labels(listener, endpoint);
            let _ = self.requests.get_or_create(&labels);
            let _ = self.errors.get_or_create(&labels);
            let _ = self.ejections.get_or_create(&labels);
        }
        for endpoint in removed {
            let labels = Self::labels(listener, endpoint);
            self.requests.remove(&labels);
            self.errors.remove(&labels);
            self.ejections.remove(&labels);
        }
        self.endpoints
            .get_or_create(&ListenerLabels { listener })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a request sent to `endpoint`.
    pub fn record_request(&self, listener: &'static str, endpoint: &str) {
        self.requests
            .get_or_create(&Self::labels(listener, endpoint))
            .inc();
    }

    /// Counts a request to `endpoint` that failed before its answer began.
    pub fn record_error(&self, listener: &'static str, endpoint: &str) {
        self.errors
            .get_or_create(&Self::labels(listener, endpoint))
            .inc();
    }

    /// Counts an ejection of `endpoint`.
    pub fn record_ejection(&self, listener: &'static str, endpoint: &str) {
        self.ejections
            .get_or_create(&Self::labels(listener, endpoint))
            .inc();
    }
}
