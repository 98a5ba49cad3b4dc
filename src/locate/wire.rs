//! A zero-allocation walker over the protobuf wire format.
//!
//! [`Fields`] iterates the fields of one message level and hands out each field's value
//! with its absolute offset in the outermost buffer, so that a locator can descend into a
//! length-delimited field ([`Fields::nested`]) and still report offsets into the original
//! message. Nothing is decoded beyond tags, varints and lengths, and every length is
//! checked against the bytes that remain. Groups (wire types 3 and 4, proto2 only) are
//! skipped with a nesting limit; a nesting limit also bounds [`Fields::nested`].

/// How deep messages and groups may nest; protobuf implementations use 100 too.
pub const MAX_DEPTH: u32 = 100;

/// Largest field number protobuf allows (2^29 - 1).
pub const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

/// Why a buffer is not a well-formed protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends inside a tag, varint, fixed-width value or length-delimited value.
    #[error("message truncated at byte {0}")]
    Truncated(usize),
    /// A varint is longer than 10 bytes or does not fit 64 bits.
    #[error("varint overflows 64 bits at byte {0}")]
    VarintOverflow(usize),
    /// A tag has field number 0 or one above 2^29 - 1.
    #[error("invalid field number at byte {0}")]
    InvalidFieldNumber(usize),
    /// A tag has wire type 6 or 7.
    #[error("invalid wire type {wire_type} at byte {offset}")]
    InvalidWireType {
        /// The wire type found.
        wire_type: u8,
        /// Where its tag starts.
        offset: usize,
    },
    /// An end-group tag without its start, or with another field number.
    #[error("unmatched end-group tag at byte {0}")]
    UnmatchedEndGroup(usize),
    /// Messages or groups nest deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
}

/// The value of one field, as the wire format carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1, little-endian.
    Fixed64(u64),
    /// Wire type 5, little-endian.
    Fixed32(u32),
    /// Wire type 2: a string, bytes, sub-message or packed repeated field.
    Len(&'a [u8]),
    /// Wire type 3: a proto2 group, already skipped; its content is not exposed.
    Group,
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field number from the tag.
    pub number: u32,
    /// The field's value.
    pub value: Value<'a>,
    /// Absolute offset (in the outermost buffer) of the value's first byte, after the
    /// tag and, for length-delimited fields, after the length prefix.
    pub offset: usize,
}

impl<'a> Field<'a> {
    /// The bytes of a length-delimited field, `None` for other wire types.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Len(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The value of a varint field, `None` for other wire types.
    pub fn varint(&self) -> Option<u64> {
        match self.value {
            Value::Varint(v) => Some(v),
            _ => None,
        }
    }
}

/// Iterates the fields of one message; yields `Err` once and then stops if the message is
/// malformed.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    /// Absolute offset of `buf[0]` in the outermost buffer.
    base: usize,
    pos: usize,
    depth: u32,
    done: bool,
}

impl<'a> Fields<'a> {
    /// Walks a top-level message.
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            base: 0,
            pos: 0,
            depth: 0,
            done: false,
        }
    }

    /// Walks the sub-message held by `field` (a length-delimited field yielded by this
    /// walker), with offsets still relative to the outermost buffer. `None` if the field
    /// is not length-delimited or the nesting limit is reached.
    pub fn nested(&self, field: &Field<'a>) -> Option<Fields<'a>> {
        let bytes = field.bytes()?;
        if self.depth >= MAX_DEPTH {
            return None;
        }
        Some(Fields {
            buf: bytes,
            base: field.offset,
            pos: 0,
            depth: self.depth + 1,
            done: false,
        })
    }

    /// How deep this walker is below the top-level message.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    fn abs(&self, pos: usize) -> usize {
        self.base + pos
    }

    fn read_varint(&mut self) -> Result<u64, WireError> {
        read_varint(self.buf, &mut self.pos).map_err(|e| e.at(self.base))
    }

    fn read_tag(&mut self) -> Result<(u32, u8), WireError> {
        let start = self.pos;
        let tag = self.read_varint()?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(MAX_FIELD_NUMBER) {
            return Err(WireError::InvalidFieldNumber(self.abs(start)));
        }
        // Both fit: number <= 2^29 - 1, and the wire type is 3 bits.
        Ok((number as u32, (tag & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(WireError::Truncated(self.abs(self.buf.len())))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn take_len(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.read_varint()?;
        let len =
            usize::try_from(len).map_err(|_| WireError::Truncated(self.abs(self.buf.len())))?;
        self.take(len)
    }

    /// Skips a group whose start tag (field `number`) was just read: reads fields until
    /// the matching end-group tag, counting nested groups against [`MAX_DEPTH`].
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        // A stack of open group numbers would need allocation; protobuf requires end tags
        // to match, so only the innermost open number must be known, and the outer ones
        // are re-checked by their own end tags. A fixed array bounds the memory.
        let mut open = [0u32; MAX_DEPTH as usize];
        let mut depth = 0usize;
        open[0] = number;
        loop {
            let start = self.pos;
            if start >= self.buf.len() {
                return Err(WireError::Truncated(self.abs(start)));
            }
            let (n, wire_type) = self.read_tag()?;
            match wire_type {
                0 => {
                    self.read_varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    self.take_len()?;
                }
                3 => {
                    depth += 1;
                    if depth + self.depth as usize >= MAX_DEPTH as usize {
                        return Err(WireError::TooDeep(self.abs(start)));
                    }
                    open[depth] = n;
                }
                4 => {
                    if open[depth] != n {
                        return Err(WireError::UnmatchedEndGroup(self.abs(start)));
                    }
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                5 => {
                    self.take(4)?;
                }
                other => {
                    return Err(WireError::InvalidWireType {
                        wire_type: other,
                        offset: self.abs(start),
                    });
                }
            }
        }
    }

    fn next_field(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let (number, wire_type) = self.read_tag()?;
        let offset = self.abs(self.pos);
        let value = match wire_type {
            0 => Value::Varint(self.read_varint()?),
            1 => {
                let b = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let bytes = self.take_len()?;
                let offset = self.abs(self.pos - bytes.len());
                return Ok(Field {
                    number,
                    value: Value::Len(bytes),
                    offset,
                });
            }
            3 => {
                if self.depth >= MAX_DEPTH {
                    return Err(WireError::TooDeep(self.abs(start)));
                }
                self.skip_group(number)?;
                Value::Group
            }
            4 => return Err(WireError::UnmatchedEndGroup(self.abs(start))),
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            other => {
                return Err(WireError::InvalidWireType {
                    wire_type: other,
                    offset: self.abs(start),
                });
            }
        };
        Ok(Field {
            number,
            value,
            offset,
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let field = self.next_field();
        if field.is_err() {
            self.done = true;
        }
        Some(field)
    }
}

impl std::iter::FusedIterator for Fields<'_> {}

/// A varint error at a position relative to some buffer, made absolute by [`Self::at`].
enum VarintError {
    Truncated(usize),
    Overflow(usize),
}

impl VarintError {
    fn at(self, base: usize) -> WireError {
        match self {
            VarintError::Truncated(pos) => WireError::Truncated(base + pos),
            VarintError::Overflow(pos) => WireError::VarintOverflow(base + pos),
        }
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let start = *pos;
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&byte) = buf.get(start + i) else {
            return Err(VarintError::Truncated(buf.len()));
        };
        let bits = u64::from(byte & 0x7f);
        // The tenth byte may only carry the 64th bit.
        if i == 9 && bits > 1 {
            return Err(VarintError::Overflow(start));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            *pos = start + i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::Overflow(start))
}

/// Decodes one varint from the start of `buf`, returning the value and its length.
pub fn decode_varint(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut pos = 0;
    let value = read_varint(buf, &mut pos).map_err(|e| e.at(0))?;
    Ok((value, pos))
}

/// Iterates the varints of a packed repeated field; stops at the first malformed one.
pub fn packed_varints(mut buf: &[u8]) -> impl Iterator<Item = u64> + '_ {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let (value, len) = decode_varint(buf).ok()?;
        buf = &buf[len..];
        Some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8]) -> Result<Vec<Field<'_>>, WireError> {
        Fields::new(buf).collect()
    }

    #[test]
    fn varint_boundaries() {
        assert_eq!(decode_varint(&[0]).unwrap(), (0, 1));
        assert_eq!(decode_varint(&[0x96, 0x01]).unwrap(), (150, 2));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_varint(&max).unwrap(), (u64::MAX, 10));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(decode_varint(&over), Err(WireError::VarintOverflow(0)));
        let long = [0x80; 11];
        assert_eq!(decode_varint(&long), Err(WireError::VarintOverflow(0)));
        assert_eq!(decode_varint(&[0x80, 0x80]), Err(WireError::Truncated(2)));
        assert_eq!(decode_varint(&[]), Err(WireError::Truncated(0)));
    }

    #[test]
    fn every_wire_type() {
        // 1: varint 150; 2: fixed64; 3: bytes "ab"; 4: fixed32; 5: group holding field 1.
        let msg = [
            0x08, 0x96, 0x01, // field 1 varint
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // field 2 fixed64
            0x1a, 2, b'a', b'b', // field 3 len
            0x25, 4, 0, 0, 0, // field 4 fixed32
            0x2b, 0x08, 0x01, 0x2c, // field 5 group { field 1 = 1 }
        ];
        let fields = collect(&msg).unwrap();
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[0].value, Value::Varint(150));
        assert_eq!(fields[1].value, Value::Fixed64(1));
        assert_eq!(fields[2].value, Value::Len(b"ab"));
        assert_eq!(fields[2].offset, 14);
        assert_eq!(fields[3].value, Value::Fixed32(4));
        assert_eq!(fields[4].value, Value::Group);
        assert_eq!(fields[4].number, 5);
    }

    #[test]
    fn nested_offsets_are_absolute() {
        // field 1 = message { field 2 = bytes "xyz" }
        let msg = [0x0a, 5, 0x12, 3, b'x', b'y', b'z'];
        let mut top = Fields::new(&msg);
        let outer = top.next().unwrap().unwrap();
        let inner: Vec<_> = top
            .nested(&outer)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(inner[0].offset, 4);
        assert_eq!(&msg[inner[0].offset..][..3], b"xyz");
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(collect(&[0x00]), Err(WireError::InvalidFieldNumber(0)));
        assert_eq!(
            collect(&[0x0e]),
            Err(WireError::InvalidWireType {
                wire_type: 6,
                offset: 0
            })
        );
        assert_eq!(collect(&[0x0a, 5, 1]), Err(WireError::Truncated(3)));
        assert_eq!(collect(&[0x09, 1, 2]), Err(WireError::Truncated(3)));
        assert_eq!(collect(&[0x0c]), Err(WireError::UnmatchedEndGroup(0)));
        assert_eq!(collect(&[0x0b, 0x14]), Err(WireError::UnmatchedEndGroup(1)));
        assert_eq!(collect(&[0x0b, 0x08]), Err(WireError::Truncated(2)));
        // A length that does not fit the remaining bytes, however large.
        let huge = [
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(collect(&huge), Err(WireError::Truncated(11)));
        // Field number above 2^29 - 1.
        assert_eq!(
            collect(&[0x80, 0x80, 0x80, 0x80, 0x20]),
            Err(WireError::InvalidFieldNumber(0))
        );
    }

    #[test]
    fn deep_groups_are_refused() {
        let mut msg = vec![0x0b; 200];
        msg.extend(vec![0x0c; 200]);
        assert!(matches!(collect(&msg), Err(WireError::TooDeep(_))));
        let mut ok = vec![0x0b; 50];
        ok.extend(vec![0x0c; 50]);
        assert_eq!(collect(&ok).unwrap().len(), 1);
    }

    #[test]
    fn nesting_limit() {
        let msg = [0x0a, 0];
        let mut fields = Fields::new(&msg);
        let field = fields.next().unwrap().unwrap();
        let mut level = fields;
        for _ in 0..MAX_DEPTH {
            level = level.nested(&field).unwrap();
        }
        assert!(level.nested(&field).is_none());
    }

    #[test]
    fn stops_after_error() {
        let msg = [0x08, 1, 0x00, 0x08, 2];
        let mut fields = Fields::new(&msg);
        assert!(fields.next().unwrap().is_ok());
        assert!(fields.next().unwrap().is_err());
        assert!(fields.next().is_none());
    }

    #[test]
    fn packed() {
        let buf = [1, 0x96, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let values: Vec<u64> = packed_varints(&buf).collect();
        assert_eq!(values, [1, 150, u64::from(u32::MAX)]);
    }
}
