//! What a protocol tells the streaming walk: per message type (a frame), what to do with
//! each field.

use super::{ModelId, TensorStart};

/// The wire type of a field, from the low 3 bits of its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    /// `None` for 6 and 7, which protobuf does not define.
    pub(super) fn from_bits(bits: u8) -> Option<WireType> {
        Some(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }
}

/// What to do with a field once its tag is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TagAction {
    /// Pass it as plain bytes (for a length-delimited field, [`Plan::on_len`] decides).
    Pass,
    /// A varint the frame wants: [`Plan::on_varint`] gets its value.
    Deliver,
    /// The message is malformed as the protocol reads it.
    Malformed,
}

/// What to do with a length-delimited field once its length is read.
#[derive(Debug)]
pub(super) enum LenAction<F> {
    /// Plain bytes.
    Skip,
    /// Small metadata: [`Plan::on_capture`] gets its bytes, or `None` when it is longer
    /// than [`super::MAX_CAPTURE`].
    Capture,
    /// A sub-message, walked with `frame`; `fatal` when the whole-message locator parses
    /// it (so that a malformed one spoils the whole message), false when it only reads
    /// metadata there.
    Descend { frame: F, fatal: bool },
    /// A tensor payload (never empty: the plan gives [`LenAction::Skip`] for 0 bytes).
    Payload(TensorStart),
}

/// One message type of a protocol, with the state its fields leave behind.
pub(super) trait Plan: Sized {
    /// A field starts (any wire type). Not called inside proto2 groups, which are skipped.
    fn on_tag(&mut self, number: u32, wire_type: WireType, model: &mut ModelDraft) -> TagAction;

    /// A length-delimited field of `len` bytes starts.
    fn on_len(&mut self, number: u32, len: usize, model: &mut ModelDraft) -> LenAction<Self>;

    /// The value of a varint field [`Plan::on_tag`] asked for.
    fn on_varint(&mut self, _number: u32, _value: u64, _model: &mut ModelDraft) {}

    /// The bytes of a field [`Plan::on_len`] asked to capture; `None` when too long.
    fn on_capture(&mut self, _number: u32, _bytes: Option<&[u8]>, _model: &mut ModelDraft) {}

    /// The message ended well-formed; `parent` is the frame of the message holding it.
    fn end(self, _parent: Option<&mut Self>, _model: &mut ModelDraft) {}
}

/// The model fields seen so far; frozen once the walk is past them.
#[derive(Debug, Default)]
pub(super) struct ModelDraft {
    id: ModelId,
    settled: bool,
}

impl ModelDraft {
    /// The model, once settled.
    pub(super) fn settled(&self) -> Option<&ModelId> {
        self.settled.then_some(&self.id)
    }

    /// Whether the model fields may still change.
    pub(super) fn open(&self) -> bool {
        !self.settled
    }

    /// The fields are final.
    pub(super) fn settle(&mut self) {
        self.settled = true;
    }

    /// Changes the draft unless it is settled.
    pub(super) fn edit(&mut self, change: impl FnOnce(&mut ModelId)) {
        if !self.settled {
            change(&mut self.id);
        }
    }
}

/// A captured field as text; text that is not UTF-8 is "" (as [`super::super::name_of`]
/// does for the whole-message locator).
pub(super) fn text(bytes: &[u8]) -> String {
    std::str::from_utf8(bytes).unwrap_or("").to_owned()
}
