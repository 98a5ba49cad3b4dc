//! The real-time check: does compressing a key still pay, measured on real messages?
//!
//! The search times settings in thread CPU time on an idle sample; real messages are
//! compressed on a machine under load, and decompressed on a peer that may be slower.
//! Each compressed message reported through
//! [`Chooser::observe_cost`](crate::message::Chooser::observe_cost) is a verdict: did it
//! cost less than storing would have at the measured link rate? When three of a key's
//! last four verdicts say no, the key is stored for a backoff of messages, then tried
//! again; a failure right after a retry doubles the backoff (up to a cap), four verdicts
//! without a fallback reset it.
//!
//! A vote over the last four is used rather than an average of the costs: one message
//! delayed by a page fault or a preemption moves an average by its full size, but casts
//! only one vote, and three bad messages in a row are enough to react.

/// Verdicts looked at.
const VOTES: u32 = 4;
/// Verdicts against compression that make the key fall back to storing.
const VOTES_TO_FALL_BACK: u32 = 3;

/// One key's recent verdicts and its fallback state.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RealTimeCheck {
    /// One bit per verdict, newest lowest; 1 = compressing did not pay.
    verdicts: u8,
    /// Verdicts recorded since the last fallback (capped at [`VOTES`]).
    seen: u32,
    /// The current backoff in messages; 0 when the key has not fallen back lately.
    backoff: u64,
    /// The key is stored while its message counter is below this.
    store_until: u64,
}

impl RealTimeCheck {
    /// Whether message number `message` of the key is stored by the fallback.
    pub fn storing(&self, message: u64) -> bool {
        message < self.store_until
    }

    /// Records whether compressing message number `message` paid; returns the backoff
    /// in messages when this verdict made the key fall back to storing.
    pub fn record(&mut self, paid: bool, message: u64, initial: u64, cap: u64) -> Option<u64> {
        if self.storing(message) {
            return None;
        }
        self.verdicts = (self.verdicts << 1) | u8::from(!paid);
        self.seen = (self.seen + 1).min(VOTES);
        let against = (self.verdicts & ((1 << VOTES) - 1)).count_ones();
        if against >= VOTES_TO_FALL_BACK {
            let backoff = if self.backoff == 0 {
                initial.max(1)
            } else {
                self.backoff.saturating_mul(2).min(cap.max(initial).max(1))
            };
            *self = Self {
                backoff,
                // The next `backoff` messages are stored.
                store_until: message.saturating_add(backoff).saturating_add(1),
                ..Self::default()
            };
            return Some(backoff);
        }
        if self.seen == VOTES {
            // A full window without a fallback: compressing pays again.
            self.backoff = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_of_four_bad_verdicts_fall_back_and_the_backoff_doubles() {
        let mut check = RealTimeCheck::default();
        let mut message = 0;
        let mut verdict = |check: &mut RealTimeCheck, paid| {
            message += 1;
            (check.record(paid, message, 10, 35), message)
        };
        // Two bad verdicts among good ones are tolerated.
        for paid in [false, true, false, true, true] {
            assert_eq!(verdict(&mut check, paid).0, None);
        }
        assert_eq!(verdict(&mut check, false).0, None);
        // The last four: good, good, bad, bad.
        assert_eq!(verdict(&mut check, false).0, None);
        let (fell, at) = verdict(&mut check, false);
        assert_eq!(fell, Some(10));
        assert!(check.storing(at + 10) && !check.storing(at + 11));
        // Failing again right after the retry doubles the backoff, up to the cap.
        let mut message = at + 10;
        let mut fall = |check: &mut RealTimeCheck| loop {
            message += 1;
            if let Some(b) = check.record(false, message, 10, 35) {
                let until = message + b;
                message = until;
                return b;
            }
        };
        assert_eq!(fall(&mut check), 20);
        assert_eq!(fall(&mut check), 35);
        assert_eq!(fall(&mut check), 35);
    }

    #[test]
    fn verdicts_during_the_fallback_are_ignored_and_success_resets_the_backoff() {
        let mut check = RealTimeCheck::default();
        for m in 1..=3 {
            check.record(false, m, 8, 64);
        }
        assert!(check.storing(4));
        assert_eq!(check.record(false, 5, 8, 64), None);
        // After the backoff, four good verdicts reset it: the next fallback starts over.
        for m in 12..=15 {
            assert_eq!(check.record(true, m, 8, 64), None);
        }
        let fell = (16..=18).find_map(|m| check.record(false, m, 8, 64));
        assert_eq!(fell, Some(8));
    }
}
