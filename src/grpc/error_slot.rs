//! Where a failing request body leaves its status for the response side.

use std::sync::{Arc, Mutex};

use super::status::Status;

/// Where a failing request body leaves its status, so the response side can report it
/// instead of the bare reset the upstream connection sees.
#[derive(Debug, Clone, Default)]
pub struct ErrorSlot(Arc<Mutex<Option<Status>>>);

impl ErrorSlot {
    /// Records `status` unless an earlier failure was recorded.
    pub fn set(&self, status: Status) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(status);
    }

    /// The recorded status, if any.
    pub fn get(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
