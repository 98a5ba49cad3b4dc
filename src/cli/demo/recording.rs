//! A chooser that remembers what the sidecar's own chooser picked, for the demo's table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bloscar::CompressOptions;
use bloscar::message::{Chooser, MessageCost, TensorInfo, TensorOutcome};

/// Wraps the configured chooser and records its latest pick per tensor name.
pub struct Recording {
    inner: Arc<dyn Chooser>,
    picks: Mutex<HashMap<String, Option<CompressOptions>>>,
}

impl Recording {
    pub fn new(inner: Arc<dyn Chooser>) -> Self {
        Recording {
            inner,
            picks: Mutex::new(HashMap::new()),
        }
    }

    /// The latest setting chosen for tensors named `name`: "none" when the chooser left
    /// it uncompressed, "-" when no tensor of that name was seen.
    pub fn pick(&self, name: &str) -> String {
        let picks = self.picks.lock().unwrap_or_else(|e| e.into_inner());
        match picks.get(name) {
            Some(Some(options)) => options.to_string(),
            Some(None) => "none".to_owned(),
            None => "-".to_owned(),
        }
    }
}

impl Chooser for Recording {
    fn choose(&self, tensor: &TensorInfo<'_>, data: &[u8]) -> Option<CompressOptions> {
        let pick = self.inner.choose(tensor, data);
        self.picks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tensor.name.to_owned(), pick);
        pick
    }

    fn observe(&self, tensor: &TensorInfo<'_>, outcome: &TensorOutcome) {
        self.inner.observe(tensor, outcome);
    }

    fn min_tensor_len(&self) -> usize {
        self.inner.min_tensor_len()
    }

    fn observe_cost(&self, tensor: &TensorInfo<'_>, cost: &MessageCost) {
        self.inner.observe_cost(tensor, cost);
    }
}
