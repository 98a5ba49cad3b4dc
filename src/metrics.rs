//! Prometheus metrics of the sidecar (prometheus-client).
//!
//! Contract: `Metrics::new() -> Metrics`, `Metrics::render(&self) -> String` (text
//! exposition format, served by the admin listener); recording methods are called by the
//! proxy and the layer.

/// The sidecar's metric families.
#[derive(Default)]
pub struct Metrics {}
