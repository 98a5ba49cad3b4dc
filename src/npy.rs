//! A reader for numpy's `.npy` format (versions 1.0, 2.0 and 3.0).
//!
//! Only what bloscar can send as a tensor is accepted: a single little-endian (or
//! byte-order-free) numeric or boolean dtype, in C order. Everything else is a typed
//! error, never a panic: big-endian data, Fortran order, structured dtypes, strings and
//! Python objects. The reader borrows the data from the caller's buffer.

use crate::DType;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Headers larger than this are refused before they are parsed (numpy writes a few
/// hundred bytes; the cap stops a lying length from steering the parser).
const MAX_HEADER_LEN: usize = 1 << 20;

/// Why a byte string is not an `.npy` array bloscar can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    /// The file does not start with numpy's magic string.
    #[error("not an .npy file (bad magic)")]
    BadMagic,
    /// The file ends inside its preamble or header.
    #[error("truncated .npy header")]
    Truncated,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {0}.{1}")]
    UnsupportedVersion(u8, u8),
    /// The header dictionary is not the Python literal numpy writes.
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    /// A dtype bloscar cannot send as a tensor.
    #[error(
        "unsupported .npy dtype {0:?} (expected a little-endian bool, int, uint, float or complex)"
    )]
    UnsupportedDtype(String),
    /// Arrays stored in Fortran order would need transposing.
    #[error("Fortran-ordered .npy arrays are not supported (save with C order)")]
    FortranOrder,
    /// The data after the header does not hold exactly `shape` elements.
    #[error("the .npy data holds {actual} bytes where the header declares {expected}")]
    DataLength {
        /// Bytes the header's shape and dtype call for.
        expected: usize,
        /// Bytes after the header.
        actual: usize,
    },
}

/// An array read from `.npy` bytes; `data` borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray<'a> {
    /// Element type.
    pub dtype: DType,
    /// Bytes per element.
    pub elem_size: usize,
    /// The numpy type string, e.g. `<f4`.
    pub descr: String,
    /// Dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements in C order, little-endian.
    pub data: &'a [u8],
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> Result<NpyArray<'_>, NpyError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(NpyError::BadMagic)?;
    let (&major, rest) = rest.split_first().ok_or(NpyError::Truncated)?;
    let (&minor, rest) = rest.split_first().ok_or(NpyError::Truncated)?;
    let (header_len, rest) = match (major, minor) {
        (1, 0) => {
            let (len, rest) = rest.split_first_chunk::<2>().ok_or(NpyError::Truncated)?;
            (usize::from(u16::from_le_bytes(*len)), rest)
        }
        (2, 0) | (3, 0) => {
            let (len, rest) = rest.split_first_chunk::<4>().ok_or(NpyError::Truncated)?;
            let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
            (len, rest)
        }
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(NpyError::BadHeader(format!(
            "header of {header_len} bytes is larger than {MAX_HEADER_LEN}"
        )));
    }
    if rest.len() < header_len {
        return Err(NpyError::Truncated);
    }
    let (header, data) = rest.split_at(header_len);
    // Versions 1 and 2 are latin-1, version 3 is UTF-8; the keys and values numpy writes
    // for the dtypes accepted here are ASCII either way.
    let header = std::str::from_utf8(header)
        .map_err(|_| NpyError::BadHeader("header is not ASCII/UTF-8 text".into()))?;
    let header = Header::parse(header)?;
    if header.fortran_order {
        return Err(NpyError::FortranOrder);
    }
    let (dtype, elem_size) = dtype_of(&header.descr)?;
    let expected = header
        .shape
        .iter()
        .try_fold(elem_size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::BadHeader("shape overflows the address space".into()))?;
    if data.len() != expected {
        return Err(NpyError::DataLength {
            expected,
            actual: data.len(),
        });
    }
    Ok(NpyArray {
        dtype,
        elem_size,
        descr: header.descr,
        shape: header.shape,
        data,
    })
}

/// Maps a numpy type string to bloscar's element type and size.
fn dtype_of(descr: &str) -> Result<(DType, usize), NpyError> {
    let unsupported = || NpyError::UnsupportedDtype(descr.to_owned());
    let (order, kind) = match descr.as_bytes().first() {
        Some(b @ (b'<' | b'>' | b'|' | b'=')) => (*b, &descr[1..]),
        _ => (b'|', descr),
    };
    let dtype = match kind {
        "?" | "b1" => DType::Bool,
        "u1" | "B" => DType::U8,
        "i1" | "b" => DType::I8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "f2" | "e" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "c8" => DType::Complex64,
        "c16" => DType::Complex128,
        _ => return Err(unsupported()),
    };
    let elem_size = dtype.item_size().ok_or_else(unsupported)?;
    // numpy writes '<' or '>' for multi-byte types and '|' for one-byte types; order
    // does not matter for one byte, and anything but '<' is refused for wider types.
    let little_endian = order == b'<' || elem_size == 1;
    if little_endian {
        Ok((dtype, elem_size))
    } else {
        Err(unsupported())
    }
}

/// The three keys of an `.npy` header dictionary.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the Python dict literal numpy writes, e.g.
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
    fn parse(text: &str) -> Result<Header, NpyError> {
        let mut p = Literal { rest: text.trim() };
        p.expect('{')?;
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        loop {
            if p.eat('}') {
                break;
            }
            let key = p.string()?;
            p.expect(':')?;
            match key.as_str() {
                "descr" => {
                    if p.peek() != Some('\'') && p.peek() != Some('"') {
                        // Structured dtypes are lists of fields.
                        let end = p.rest.find(']').map_or(p.rest.len(), |i| i + 1);
                        return Err(NpyError::UnsupportedDtype(p.rest[..end].to_owned()));
                    }
                    descr = Some(p.string()?);
                }
                "fortran_order" => fortran_order = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                other => return Err(NpyError::BadHeader(format!("unknown key {other:?}"))),
            }
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        let missing = |k: &str| NpyError::BadHeader(format!("missing key {k:?}"));
        Ok(Header {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

/// A cursor over the small subset of Python literal syntax `.npy` headers use.
struct Literal<'a> {
    rest: &'a str,
}

impl Literal<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest.chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {c:?}")))
        }
    }

    fn error(&self, what: &str) -> NpyError {
        let near: String = self.rest.chars().take(20).collect();
        NpyError::BadHeader(format!("{what} near {near:?}"))
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a string")),
        };
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| self.error("unterminated string"))?;
        if body[..end].contains('\\') {
            return Err(self.error("escapes in strings are not supported"));
        }
        let s = body[..end].to_owned();
        self.rest = &body[end + 1..];
        Ok(s)
    }

    fn boolean(&mut self) -> Result<bool, NpyError> {
        self.skip_ws();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(r) = self.rest.strip_prefix(word) {
                self.rest = r;
                return Ok(value);
            }
        }
        Err(self.error("expected True or False"))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, NpyError> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Ok(dims);
            }
            self.skip_ws();
            let digits = self
                .rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(self.rest.len());
            let dim = self.rest[..digits]
                .parse::<usize>()
                .map_err(|_| self.error("expected a dimension"))?;
            self.rest = &self.rest[digits..];
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
        } else {
            out.extend(u32::try_from(header.len()).unwrap().to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_a_hand_written_header() {
        let bytes = npy(
            1,
            "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }\n",
            &[1, 0, 2, 0],
        );
        let a = parse(&bytes).unwrap();
        assert_eq!(
            (a.dtype, a.elem_size, a.shape.clone()),
            (DType::U16, 2, vec![2])
        );
        assert_eq!(a.data, &[1, 0, 2, 0]);
    }

    #[test]
    fn scalar_and_empty_shapes() {
        let scalar = npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            &[0; 4],
        );
        assert_eq!(parse(&scalar).unwrap().shape, Vec::<usize>::new());
        let empty = npy(
            2,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 0), }",
            &[],
        );
        assert_eq!(parse(&empty).unwrap().shape, vec![3, 0]);
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        let h = |descr: &str, fortran: &str| {
            format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': (1,), }}")
        };
        let cases: [(String, NpyError); 5] = [
            (
                h("'>f4'", "False"),
                NpyError::UnsupportedDtype(">f4".into()),
            ),
            (
                h("'<U3'", "False"),
                NpyError::UnsupportedDtype("<U3".into()),
            ),
            (h("'|O'", "False"), NpyError::UnsupportedDtype("|O".into())),
            (h("'<f4'", "True"), NpyError::FortranOrder),
            (
                h("[('a', '<f4')]", "False"),
                NpyError::UnsupportedDtype("[('a', '<f4')]".into()),
            ),
        ];
        for (header, want) in cases {
            assert_eq!(
                parse(&npy(1, &header, &[0; 4])).unwrap_err(),
                want,
                "{header}"
            );
        }
    }

    #[test]
    fn refuses_malformed_bytes() {
        assert_eq!(parse(b"PK\x03\x04").unwrap_err(), NpyError::BadMagic);
        assert_eq!(parse(b"\x93NUMPY\x01").unwrap_err(), NpyError::Truncated);
        assert_eq!(
            parse(b"\x93NUMPY\x04\x00\x00\x00").unwrap_err(),
            NpyError::UnsupportedVersion(4, 0)
        );
        let ok = npy(
            1,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
            &[0; 16],
        );
        for cut in 0..ok.len() {
            assert!(parse(&ok[..cut]).is_err(), "cut at {cut}");
        }
        let long = npy(
            1,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
            &[0; 17],
        );
        assert_eq!(
            parse(&long).unwrap_err(),
            NpyError::DataLength {
                expected: 16,
                actual: 17
            }
        );
        let huge = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            &[],
        );
        assert!(matches!(parse(&huge), Err(NpyError::BadHeader(_))));
        let bad = npy(1, "{'descr': '<f4', 'shape': (1,), }", &[0; 4]);
        assert!(matches!(parse(&bad), Err(NpyError::BadHeader(_))));
    }
}
