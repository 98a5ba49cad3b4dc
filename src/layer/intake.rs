//! What a transforming body has read from its input but not yet taken in: the rest of
//! the last DATA frame, as gRPC frame events.
//!
//! A body takes the bytes of an event in only once the memory budget has room for them
//! (and for what they will become). Until then the event waits here, the body stops
//! reading, and flow control holds the sender back. The frame in hand is not counted:
//! like the bytes in the flow-control windows, it is at most one DATA frame per stream.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::budget::BudgetError;
use crate::grpc::frame::{FrameDecoder, FrameEvent};
use crate::grpc::{Code, Status};

/// Most message bytes taken in at once: a longer frame (a tower user's body may yield a
/// whole message as one) is taken in pieces, so that no reservation has to cover it
/// whole. The sidecar's own HTTP/2 frames are no longer than this.
pub const MAX_PIECE: usize = 256 << 10;

/// The input in hand; see the module docs.
#[derive(Debug, Default)]
pub struct Intake {
    unread: Bytes,
    /// Events taken from `unread` and given back, to handle first.
    back: VecDeque<FrameEvent>,
}

impl Intake {
    /// Whether everything read has been taken in.
    pub fn is_empty(&self) -> bool {
        self.unread.is_empty() && self.back.is_empty()
    }

    /// The next DATA frame, once the last one has been taken in.
    pub fn fill(&mut self, data: Bytes) {
        debug_assert!(self.is_empty(), "a frame is still in hand");
        self.unread = data;
    }

    /// The next event to handle, message bytes at most [`MAX_PIECE`] at a time; `None`
    /// once the frame in hand is used up.
    pub fn next(&mut self, frames: &mut FrameDecoder) -> Result<Option<FrameEvent>, Status> {
        let event = match self.back.pop_front() {
            Some(event) => event,
            None => match frames.decode(&mut self.unread)? {
                Some(event) => event,
                None => return Ok(None),
            },
        };
        Ok(Some(match event {
            FrameEvent::Data(mut bytes) if bytes.len() > MAX_PIECE => {
                let piece = bytes.split_to(MAX_PIECE);
                self.back.push_front(FrameEvent::Data(bytes));
                FrameEvent::Data(piece)
            }
            event => event,
        }))
    }

    /// Gives back `event`, not handled yet: it comes next again.
    pub fn put_back(&mut self, event: FrameEvent) {
        self.back.push_front(event);
    }
}

/// The status a call ends with when the memory budget refuses it.
pub fn budget_status(err: BudgetError) -> Status {
    Status::new(Code::ResourceExhausted, format!("bloscar: {err}"))
}
