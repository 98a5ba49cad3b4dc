//! Streaming decoding of gRPC's length-prefixed messages.
//!
//! HTTP/2 DATA frames and gRPC messages are cut independently: a frame may hold part of
//! a message, or the ends and starts of several. [`FrameDecoder`] turns the frames of a
//! stream into message events without ever holding a whole message: the 5-byte prefix is
//! assembled (it may itself be split), then the message's bytes are handed out as they
//! arrive, as zero-copy slices of the frames.

use bytes::{Buf, Bytes};

use super::status::{Code, Status};

/// Length of the gRPC message prefix: one flag byte and a big-endian u32 length.
pub const PREFIX_LEN: usize = 5;

/// The 5-byte prefix that frames a message of `len` bytes.
pub fn prefix(compressed: bool, len: usize) -> Result<[u8; PREFIX_LEN], Status> {
    let len = u32::try_from(len).map_err(|_| {
        Status::new(
            Code::ResourceExhausted,
            format!("message of {len} bytes exceeds gRPC's limit of 4 GiB - 1"),
        )
    })?;
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[0] = u8::from(compressed);
    prefix[1..].copy_from_slice(&len.to_be_bytes());
    Ok(prefix)
}

/// What the decoder found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A message begins: its compressed flag and its length from the prefix.
    Start {
        /// The compressed flag: the message is in the call's `grpc-encoding`.
        compressed: bool,
        /// The message's length in bytes, without the prefix.
        len: usize,
    },
    /// The next bytes of the current message (never empty).
    Data(Bytes),
    /// The current message is complete.
    End,
}

/// Where the decoder is within the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a prefix; `have` of its bytes are in `prefix`.
    Prefix { have: usize },
    /// Inside a message; `remaining` bytes of it are still to come.
    Message { remaining: usize },
    /// All of a message's bytes were handed out; `End` is due.
    Ending,
}

/// Decodes a gRPC stream into message events, holding at most a prefix's 5 bytes.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    state: State,
    prefix: [u8; PREFIX_LEN],
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder that refuses, from the prefix alone, messages longer than `max_len`.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            state: State::Prefix { have: 0 },
            prefix: [0; PREFIX_LEN],
            max_len,
        }
    }

    /// The next event from `buf`, consuming what it uses; `None` when `buf` is exhausted
    /// before the next event (feed the next frame then).
    pub fn decode(&mut self, buf: &mut Bytes) -> Result<Option<FrameEvent>, Status> {
        loop {
            match self.state {
                State::Ending => {
                    self.state = State::Prefix { have: 0 };
                    return Ok(Some(FrameEvent::End));
                }
                State::Message { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = remaining.min(buf.len());
                    let data = buf.split_to(take);
                    self.state = if take == remaining {
                        State::Ending
                    } else {
                        State::Message {
                            remaining: remaining - take,
                        }
                    };
                    return Ok(Some(FrameEvent::Data(data)));
                }
                State::Prefix { have } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (PREFIX_LEN - have).min(buf.len());
                    self.prefix[have..have + take].copy_from_slice(&buf[..take]);
                    buf.advance(take);
                    if have + take < PREFIX_LEN {
                        self.state = State::Prefix { have: have + take };
                        continue;
                    }
                    let event = self.start()?;
                    return Ok(Some(event));
                }
            }
        }
    }

    /// Reads a complete prefix and moves into its message.
    fn start(&mut self) -> Result<FrameEvent, Status> {
        let compressed = match self.prefix[0] {
            0 => false,
            1 => true,
            flag => {
                return Err(Status::new(
                    Code::Internal,
                    format!("invalid gRPC compressed flag {flag}"),
                ));
            }
        };
        let mut len_bytes = &self.prefix[1..];
        let len = usize::try_from(len_bytes.get_u32()).unwrap_or(usize::MAX);
        if len > self.max_len {
            return Err(Status::new(
                Code::ResourceExhausted,
                format!(
                    "message of {len} bytes exceeds the limit of {} bytes",
                    self.max_len
                ),
            ));
        }
        self.state = if len == 0 {
            State::Ending
        } else {
            State::Message { remaining: len }
        };
        Ok(FrameEvent::Start { compressed, len })
    }

    /// Whether the stream may end here: between two messages.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Prefix { have: 0 }
    }
}

/// Follows a gRPC stream's message boundaries from its bytes alone, without holding or
/// checking anything: for a sender that must know whether a status may go out now (only
/// between messages) or whether ending the stream would cut a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCursor {
    /// Prefix bytes seen of the next message (0 to 4).
    prefix_have: usize,
    /// The length bytes of a prefix being read.
    len_bytes: [u8; 4],
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl MessageCursor {
    /// Moves past `data`, the next bytes of the stream.
    pub fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                data = &data[take..];
                self.remaining -= take as u64;
                continue;
            }
            // The flag byte is not needed; the four length bytes follow it.
            let take = (PREFIX_LEN - self.prefix_have).min(data.len());
            for (i, &byte) in data[..take].iter().enumerate() {
                let at = self.prefix_have + i;
                if at >= 1 {
                    self.len_bytes[at - 1] = byte;
                }
            }
            data = &data[take..];
            self.prefix_have += take;
            if self.prefix_have == PREFIX_LEN {
                self.prefix_have = 0;
                self.remaining = u64::from(u32::from_be_bytes(self.len_bytes));
            }
        }
    }

    /// Whether the bytes so far end between two messages (or before the first).
    pub fn at_boundary(&self) -> bool {
        self.prefix_have == 0 && self.remaining == 0
    }
}

/// The status of a stream that ended inside a message.
pub fn cut_mid_message() -> Status {
    Status::new(
        Code::Internal,
        "stream ended in the middle of a gRPC message",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(messages: &[(bool, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (compressed, data) in messages {
            out.extend_from_slice(&prefix(*compressed, data.len()).unwrap());
            out.extend_from_slice(data);
        }
        out
    }

    /// Decodes `input` fed in pieces of `piece` bytes back into messages.
    fn decode_all(input: &[u8], piece: usize) -> Result<Vec<(bool, Vec<u8>)>, Status> {
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut open = false;
        let mut cursor = MessageCursor::default();
        for chunk in input.chunks(piece.max(1)) {
            cursor.advance(chunk);
            let mut buf = Bytes::copy_from_slice(chunk);
            while let Some(event) = decoder.decode(&mut buf)? {
                match event {
                    FrameEvent::Start { compressed, len } => {
                        assert!(!open);
                        open = true;
                        out.push((compressed, Vec::with_capacity(len)));
                    }
                    FrameEvent::Data(data) => {
                        assert!(open && !data.is_empty());
                        out.last_mut().unwrap().1.extend_from_slice(&data);
                    }
                    FrameEvent::End => {
                        assert!(open);
                        open = false;
                    }
                }
            }
            // The cursor, which only counts, agrees with the decoder.
            assert_eq!(cursor.at_boundary(), decoder.at_boundary());
        }
        assert!(decoder.at_boundary());
        Ok(out)
    }

    #[test]
    fn empty_messages_start_and_end_at_once() {
        let input = framed(&[(false, b""), (true, b"x"), (false, b"")]);
        let got = decode_all(&input, 1).unwrap();
        assert_eq!(
            got,
            vec![(false, vec![]), (true, b"x".to_vec()), (false, vec![])]
        );
    }

    #[test]
    fn oversize_and_bad_flags_fail_from_the_prefix() {
        let mut decoder = FrameDecoder::new(10);
        let mut buf = Bytes::from_static(&[0, 0, 0, 0, 11]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        let mut decoder = FrameDecoder::new(10);
        let mut buf = Bytes::from_static(&[2, 0, 0, 0, 1]);
        assert_eq!(decoder.decode(&mut buf).unwrap_err().code, Code::Internal);
    }

    #[test]
    fn a_split_prefix_is_not_a_boundary() {
        let mut decoder = FrameDecoder::new(10);
        let mut buf = Bytes::from_static(&[0, 0]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(!decoder.at_boundary());
    }

    #[test]
    fn the_cursor_follows_messages_in_any_pieces() {
        let input = framed(&[(false, b"abc"), (true, b""), (false, &[7; 300])]);
        // Boundaries: before everything, after each message.
        let boundaries = [0, 8, 13, input.len()];
        for piece in [1, 2, 3, 5, 7, 64, input.len()] {
            let mut cursor = MessageCursor::default();
            let mut at = 0;
            for chunk in input.chunks(piece) {
                cursor.advance(chunk);
                at += chunk.len();
                assert_eq!(
                    cursor.at_boundary(),
                    boundaries.contains(&at),
                    "{piece} {at}"
                );
            }
        }
    }

    #[test]
    fn a_cursor_inside_a_prefix_or_a_message_is_not_at_a_boundary() {
        let mut cursor = MessageCursor::default();
        assert!(cursor.at_boundary());
        cursor.advance(&[0, 0]);
        assert!(!cursor.at_boundary());
        cursor.advance(&[0, 0, 2, b'x']);
        assert!(!cursor.at_boundary());
        cursor.advance(b"y");
        assert!(cursor.at_boundary());
        // The largest length a prefix can declare.
        cursor.advance(&[1, 0xff, 0xff, 0xff, 0xff]);
        cursor.advance(&[0; 1000]);
        assert!(!cursor.at_boundary());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Any messages, cut into frames of any size, come out whole and in order.
        #[test]
        fn any_framing_decodes_to_the_messages(
            messages in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..3000)),
                0..6,
            ),
            piece in 1usize..4000,
        ) {
            let refs: Vec<(bool, &[u8])> = messages.iter().map(|(c, d)| (*c, d.as_slice())).collect();
            let input = framed(&refs);
            let got = decode_all(&input, piece).unwrap();
            proptest::prop_assert_eq!(got, messages);
        }
    }
}
