//! What compressed tensors really cost, reported to the chooser once the peer has said
//! how long it took to decompress them.
//!
//! The outbound compresses a request's tensors long before the inbound's report comes
//! back with the response's trailers (`dec=` in the `bloscar-link` trailer). It holds
//! each tensor's cost until then, adds its share of the peer's decompression time, and
//! hands it to the chooser's real-time check; costs still held when the call ends go
//! without the peer's share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::message::{Chooser, MessageCost};
use crate::stream_encoder::{CostSink, OwnedTensorInfo};

/// One call's tensor costs, waiting for the peer's report.
pub struct CallCosts {
    chooser: Arc<dyn Chooser>,
    held: Mutex<Vec<(OwnedTensorInfo, MessageCost)>>,
}

/// Costs a call may hold: a message with more tensors reports the rest at once.
const MAX_HELD: usize = 64;

impl CallCosts {
    /// Costs for `chooser`, held until [`CallCosts::settle`].
    pub fn new(chooser: Arc<dyn Chooser>) -> Self {
        CallCosts {
            chooser,
            held: Mutex::new(Vec::new()),
        }
    }

    /// Reports every held cost, with `peer_decode` (the peer's time for all of them)
    /// shared out by size.
    pub fn settle(&self, peer_decode: Option<Duration>) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()));
        let total: usize = held.iter().map(|(_, cost)| cost.original_len).sum();
        for (tensor, mut cost) in held {
            if let Some(decode) = peer_decode.filter(|_| total > 0) {
                let share = cost.original_len as f64 / total as f64;
                cost.peer_decompress_secs = Some(decode.as_secs_f64() * share);
            }
            self.chooser.observe_cost(&tensor.as_info(), &cost);
        }
    }
}

impl CostSink for CallCosts {
    fn report(&self, tensor: OwnedTensorInfo, cost: MessageCost) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() < MAX_HELD {
            held.push((tensor, cost));
            return;
        }
        drop(held);
        self.chooser.observe_cost(&tensor.as_info(), &cost);
    }
}

impl Drop for CallCosts {
    fn drop(&mut self) {
        self.settle(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::TensorInfo;
    use crate::{CompressOptions, DType};

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, Option<f64>)>>);

    impl Chooser for Seen {
        fn choose(&self, _: &TensorInfo<'_>, _: &[u8]) -> Option<CompressOptions> {
            None
        }
        fn observe_cost(&self, tensor: &TensorInfo<'_>, cost: &MessageCost) {
            self.0
                .lock()
                .unwrap()
                .push((tensor.name.to_owned(), cost.peer_decompress_secs));
        }
    }

    fn tensor(name: &str) -> OwnedTensorInfo {
        OwnedTensorInfo {
            method: Arc::from("/m"),
            model: "model:1".into(),
            name: name.into(),
            dtype: DType::F32,
            elem_size: 4,
            link_bytes_per_sec: Some(1e7),
            len: 1 << 20,
        }
    }

    fn cost(original_len: usize) -> MessageCost {
        MessageCost {
            original_len,
            wire_len: original_len / 2,
            compress_secs: 0.01,
            peer_decompress_secs: None,
            link_bytes_per_sec: Some(1e7),
        }
    }

    #[test]
    fn the_peers_decode_time_is_shared_by_size() {
        let seen = Arc::new(Seen::default());
        let costs = CallCosts::new(seen.clone());
        costs.report(tensor("a"), cost(3_000));
        costs.report(tensor("b"), cost(1_000));
        assert!(seen.0.lock().unwrap().is_empty(), "held until the report");
        costs.settle(Some(Duration::from_millis(8)));
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        assert!((got[0].1.unwrap() - 0.006).abs() < 1e-9);
        assert!((got[1].1.unwrap() - 0.002).abs() < 1e-9);
    }

    #[test]
    fn costs_still_held_when_the_call_ends_go_without_the_peers_share() {
        let seen = Arc::new(Seen::default());
        drop({
            let costs = CallCosts::new(seen.clone());
            costs.report(tensor("a"), cost(10));
            costs
        });
        assert_eq!(*seen.0.lock().unwrap(), vec![("a".to_owned(), None)]);
    }
}
