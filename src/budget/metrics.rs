//! The budget as Prometheus metrics, read on every scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::MemoryBudget;

/// A prometheus-client collector over a [`MemoryBudget`]; its names get the registry's
/// prefix (`bloscar_`).
#[derive(Debug, Clone)]
pub struct MemoryCollector {
    budget: MemoryBudget,
}

impl MemoryCollector {
    pub(super) fn new(budget: MemoryBudget) -> Self {
        MemoryCollector { budget }
    }
}

fn gauge(bytes: usize) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX))
}

impl Collector for MemoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.budget.stats();
        for (name, help, bytes) in [
            (
                "memory_budget_bytes",
                "Message bytes the sidecar may hold in flight (BLOSCAR_MEMORY_BUDGET), half per direction",
                s.capacity,
            ),
            (
                "memory_in_use_bytes",
                "Message bytes held in flight now",
                s.in_use,
            ),
            (
                "memory_peak_bytes",
                "The most message bytes held in flight at once since start",
                s.peak,
            ),
        ] {
            let g = gauge(bytes);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let waits = ConstCounter::new(s.waits);
        waits.encode(encoder.encode_descriptor(
            "memory_waits",
            "Times a stream waited for the memory budget (it stopped reading meanwhile)",
            None,
            waits.metric_type(),
        )?)?;
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "memory_rejections",
            "Calls failed with RESOURCE_EXHAUSTED by the memory budget, by why: one message needed more than a call may hold (too_large), or the wait passed its limit (wait_limit)",
            None,
            counter.metric_type(),
        )?;
        for (reason, n) in [("too_large", s.too_large), ("wait_limit", s.wait_limit)] {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}
