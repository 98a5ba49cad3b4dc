//! Tagged ndarrays: rules, given by configuration, that say where tensors live in a
//! user's own messages.
//!
//! `BLOSCAR_NDARRAY_RULES` holds rules separated by `;` (blank rules are ignored):
//!
//! ```text
//! rule      = method [ "@" direction ] "=" path { ":" option }
//! method    = the gRPC method path, e.g. /acme.vision.v1.Segmenter/Segment
//! direction = request | response            (default: both)
//! path      = number { "." number }         field numbers from the top-level message
//!                                           to the tensor field
//! option    = "dtype=" dtype-name           a fixed element type (float32, fp32, <f4, ...)
//!           | "dtype=" ref [ "/" enum ]     the field holding the element type
//!           | "name=" ref                   the string field holding the tensor name
//! ref       = number { "." number }         field numbers from the message that holds
//!                                           the tensor field (a sibling, or a field of a
//!                                           sibling message)
//! enum      = bloscar | tf | onnx           how a numeric dtype field is read (default
//!                                           bloscar: the DType enum of ndarray.proto)
//! ```
//!
//! Without a `dtype` option the field at `path` is a `bloscar.v1.NDArray` message
//! (`proto/bloscar/v1/ndarray.proto`: dtype 1, shape 2, data 3) and its `data` is
//! located with the element size of its `dtype`. With a `dtype` option the field at
//! `path` holds the raw little-endian values itself: a `bytes` field, or a packed
//! repeated fixed-width field (`float`, `double`, `fixed32`, ...). A dtype field that is
//! a string is read by name (`FP32`, `float32`, `DT_FLOAT`, `<f4`, ...).
//!
//! Repeated fields anywhere on the path are followed into every element, and a protobuf
//! map is a repeated message with the key in field 1 and the value in field 2, so
//! `2.2` reaches every value of a map in field 2. Examples:
//!
//! ```text
//! /acme.v1.Imaging/Denoise=1                         field 1 of request and response is an NDArray
//! /acme.v1.Imaging/Segment@response=3.2:dtype=uint8  map field 3's values are uint8 bytes
//! /acme.v1.Scorer/Score@request=2.3:dtype=2:name=1   repeated field 2 holds {1 name, 2 dtype string, 3 bytes}
//! /acme.v1.Runner/Run=1.9:dtype=2/onnx:name=8        an ONNX TensorProto in field 1
//! ```

use std::fmt;
use std::str::FromStr;

use super::wire::{Fields, MAX_FIELD_NUMBER, Value, WireError};
use super::{Direction, TensorRange, name_of};
use crate::DType;

/// Longest field path a rule may name.
pub const MAX_PATH_LEN: usize = 16;

/// `bloscar.v1.NDArray` field numbers.
const NDARRAY_DTYPE: u32 = 1;
const NDARRAY_DATA: u32 = 3;

/// One configured rule: where a method's messages hold tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedRule {
    method: String,
    direction: Option<Direction>,
    path: Vec<u32>,
    dtype: DTypeSource,
    name: Option<Vec<u32>>,
}

/// Where a rule's element type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DTypeSource {
    /// The field is a `bloscar.v1.NDArray`, which says its own dtype.
    NdArray,
    /// Fixed by the rule.
    Fixed(DType),
    /// Read from a field next to the tensor field.
    Field { path: Vec<u32>, encoding: DTypeEnum },
}

/// How a numeric dtype field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DTypeEnum {
    Bloscar,
    Tf,
    Onnx,
}

impl DTypeEnum {
    fn decode(self, value: u64) -> Option<DType> {
        match self {
            DTypeEnum::Bloscar => DType::from_bloscar(value),
            DTypeEnum::Tf => DType::from_tf(value),
            DTypeEnum::Onnx => DType::from_onnx(value),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            DTypeEnum::Bloscar => "bloscar",
            DTypeEnum::Tf => "tf",
            DTypeEnum::Onnx => "onnx",
        }
    }
}

/// A rule of `BLOSCAR_NDARRAY_RULES` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ndarray rule {rule:?}: {problem}")]
pub struct RuleError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub problem: String,
}

impl TaggedRule {
    /// Parses a whole `BLOSCAR_NDARRAY_RULES` value: rules separated by `;`.
    pub fn parse_list(value: &str) -> Result<Vec<TaggedRule>, RuleError> {
        value
            .split(';')
            .map(str::trim)
            .filter(|rule| !rule.is_empty())
            .map(str::parse)
            .collect()
    }

    /// The gRPC method path the rule is for.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the rule applies to messages of `method` going in `direction`.
    pub fn applies_to(&self, method: &str, direction: Direction) -> bool {
        self.method == method && self.direction.is_none_or(|d| d == direction)
    }

    /// Appends the ranges this rule finds in `msg`.
    pub(super) fn locate<'a>(
        &self,
        msg: &'a [u8],
        out: &mut Vec<TensorRange<'a>>,
    ) -> Result<(), WireError> {
        self.walk(Fields::new(msg), &self.path, out)
    }

    /// Follows `path` down to the messages holding the tensor field.
    fn walk<'a>(
        &self,
        fields: Fields<'a>,
        path: &[u32],
        out: &mut Vec<TensorRange<'a>>,
    ) -> Result<(), WireError> {
        let (&first, rest) = path.split_first().unwrap_or((&0, &[]));
        if rest.is_empty() {
            return self.holder(fields, first, out);
        }
        let mut walker = fields;
        while let Some(field) = walker.next() {
            let field = field?;
            if field.number != first {
                continue;
            }
            // A field of another wire type is not on the rule's path.
            if let Some(nested) = walker.nested(&field) {
                self.walk(nested, rest, out)?;
            } else if field.bytes().is_some() {
                return Err(WireError::TooDeep(field.offset));
            }
        }
        Ok(())
    }

    /// In the message holding the tensor field `number`: the ranges of every occurrence.
    fn holder<'a>(
        &self,
        fields: Fields<'a>,
        number: u32,
        out: &mut Vec<TensorRange<'a>>,
    ) -> Result<(), WireError> {
        let name = match &self.name {
            Some(path) => match lookup(fields.clone(), path)? {
                Some(Value::Len(bytes)) => name_of(bytes),
                _ => "",
            },
            None => "",
        };
        let dtype = match &self.dtype {
            DTypeSource::NdArray => None,
            DTypeSource::Fixed(dtype) => Some(*dtype),
            DTypeSource::Field { path, encoding } => match lookup(fields.clone(), path)? {
                Some(Value::Varint(v)) => encoding.decode(v),
                Some(Value::Len(bytes)) => {
                    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok())
                }
                _ => None,
            },
        };
        let mut walker = fields;
        while let Some(field) = walker.next() {
            let field = field?;
            if field.number != number {
                continue;
            }
            let Some(bytes) = field.bytes() else { continue };
            if self.dtype == DTypeSource::NdArray {
                let Some(array) = walker.nested(&field) else {
                    return Err(WireError::TooDeep(field.offset));
                };
                ndarray(array, name, out)?;
            } else if let Some(dtype) = dtype {
                out.push(TensorRange {
                    offset: field.offset,
                    len: bytes.len(),
                    elem_size: dtype.elem_size(),
                    name,
                    dtype,
                });
            }
        }
        Ok(())
    }
}

/// A `bloscar.v1.NDArray`: its `data` with the element size of its `dtype`.
fn ndarray<'a>(
    array: Fields<'a>,
    name: &'a str,
    out: &mut Vec<TensorRange<'a>>,
) -> Result<(), WireError> {
    let mut dtype = None;
    for field in array.clone() {
        let field = field?;
        if let (NDARRAY_DTYPE, Some(v)) = (field.number, field.varint()) {
            dtype = DType::from_bloscar(v);
        }
    }
    for field in array {
        let field = field?;
        if let (NDARRAY_DATA, Some(bytes), Some(dtype)) = (field.number, field.bytes(), dtype) {
            out.push(TensorRange {
                offset: field.offset,
                len: bytes.len(),
                elem_size: dtype.elem_size(),
                name,
                dtype,
            });
        }
    }
    Ok(())
}

/// The last value at `path` below `fields` (protobuf's rule for a repeated singular field).
fn lookup<'a>(fields: Fields<'a>, path: &[u32]) -> Result<Option<Value<'a>>, WireError> {
    let Some((&first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let mut found = None;
    let mut walker = fields;
    while let Some(field) = walker.next() {
        let field = field?;
        if field.number != first {
            continue;
        }
        if rest.is_empty() {
            found = Some(field.value);
        } else if let Some(nested) = walker.nested(&field)
            && let Some(value) = lookup(nested, rest)?
        {
            found = Some(value);
        }
    }
    Ok(found)
}

fn parse_path(text: &str, what: &str) -> Result<Vec<u32>, String> {
    if text.is_empty() {
        return Err(format!(
            "{what} is empty (expected field numbers such as 2.1)"
        ));
    }
    let path = text
        .split('.')
        .map(|part| match part.parse::<u32>() {
            Ok(n) if (1..=MAX_FIELD_NUMBER).contains(&n) => Ok(n),
            _ => Err(format!(
                "{what} {text:?}: {part:?} is not a field number (1 to {MAX_FIELD_NUMBER})"
            )),
        })
        .collect::<Result<Vec<u32>, String>>()?;
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "{what} {text:?} is longer than {MAX_PATH_LEN} fields"
        ));
    }
    Ok(path)
}

fn is_path(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_rule(rule: &str) -> Result<TaggedRule, String> {
    let (head, tail) = rule
        .split_once('=')
        .ok_or("expected <method>[@request|@response]=<field path>[:option...]")?;
    let (method, direction) = match head.trim().split_once('@') {
        Some((method, "request")) => (method, Some(Direction::Request)),
        Some((method, "response")) => (method, Some(Direction::Response)),
        Some((_, other)) => {
            return Err(format!(
                "direction {other:?} is neither \"request\" nor \"response\""
            ));
        }
        None => (head.trim(), None),
    };
    let well_formed = method
        .strip_prefix('/')
        .and_then(|m| m.split_once('/'))
        .is_some_and(|(service, name)| {
            !service.is_empty()
                && !name.is_empty()
                && !name.contains('/')
                && !method.contains(char::is_whitespace)
        });
    if !well_formed {
        return Err(format!(
            "method {method:?} is not a gRPC method path like /package.Service/Method"
        ));
    }
    let mut parts = tail.split(':');
    let path = parse_path(parts.next().unwrap_or("").trim(), "field path")?;
    let mut dtype = DTypeSource::NdArray;
    let mut name = None;
    for option in parts {
        let (key, value) = option
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("option {option:?} is not key=value (dtype=... or name=...)"))?;
        match key.trim() {
            "dtype" if dtype != DTypeSource::NdArray => return Err("dtype is given twice".into()),
            "dtype" => dtype = parse_dtype(value.trim())?,
            "name" if name.is_some() => return Err("name is given twice".into()),
            "name" => name = Some(parse_path(value.trim(), "name field")?),
            other => return Err(format!("unknown option {other:?} (expected dtype or name)")),
        }
    }
    Ok(TaggedRule {
        method: method.to_owned(),
        direction,
        path,
        dtype,
        name,
    })
}

fn parse_dtype(value: &str) -> Result<DTypeSource, String> {
    let (reference, encoding) = match value.split_once('/') {
        Some((reference, encoding)) => (reference, Some(encoding)),
        None => (value, None),
    };
    if !is_path(reference) {
        if encoding.is_some() {
            return Err(format!("dtype field {reference:?} is not a field path"));
        }
        return value
            .parse()
            .map(DTypeSource::Fixed)
            .map_err(|e: crate::dtype::UnknownDType| e.to_string());
    }
    let encoding = match encoding {
        None | Some("bloscar") => DTypeEnum::Bloscar,
        Some("tf") => DTypeEnum::Tf,
        Some("onnx") => DTypeEnum::Onnx,
        Some(other) => {
            return Err(format!(
                "dtype enum {other:?} is not one of bloscar, tf, onnx"
            ));
        }
    };
    Ok(DTypeSource::Field {
        path: parse_path(reference, "dtype field")?,
        encoding,
    })
}

impl FromStr for TaggedRule {
    type Err = RuleError;

    /// Parses one rule (see the module docs for the syntax).
    fn from_str(rule: &str) -> Result<Self, Self::Err> {
        parse_rule(rule.trim()).map_err(|problem| RuleError {
            rule: rule.to_owned(),
            problem,
        })
    }
}

fn write_path(f: &mut fmt::Formatter<'_>, path: &[u32]) -> fmt::Result {
    for (i, n) in path.iter().enumerate() {
        if i > 0 {
            f.write_str(".")?;
        }
        write!(f, "{n}")?;
    }
    Ok(())
}

impl fmt::Display for TaggedRule {
    /// The rule in the syntax it parses from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.method)?;
        match self.direction {
            Some(Direction::Request) => f.write_str("@request")?,
            Some(Direction::Response) => f.write_str("@response")?,
            None => {}
        }
        f.write_str("=")?;
        write_path(f, &self.path)?;
        match &self.dtype {
            DTypeSource::NdArray => {}
            DTypeSource::Fixed(dtype) => write!(f, ":dtype={dtype}")?,
            DTypeSource::Field { path, encoding } => {
                f.write_str(":dtype=")?;
                write_path(f, path)?;
                write!(f, "/{}", encoding.as_str())?;
            }
        }
        if let Some(path) = &self.name {
            f.write_str(":name=")?;
            write_path(f, path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rule: &str) -> TaggedRule {
        rule.parse().unwrap()
    }

    #[test]
    fn syntax() {
        let rule = parse(" /a.B/C@request=2.3:dtype=2:name=1 ");
        assert_eq!(rule.method(), "/a.B/C");
        assert!(rule.applies_to("/a.B/C", Direction::Request));
        assert!(!rule.applies_to("/a.B/C", Direction::Response));
        assert_eq!(
            rule.to_string(),
            "/a.B/C@request=2.3:dtype=2/bloscar:name=1"
        );
        let rule = parse("/a.B/C=1");
        assert!(rule.applies_to("/a.B/C", Direction::Response));
        assert_eq!(rule.dtype, DTypeSource::NdArray);
        assert_eq!(
            parse("/a.B/C=1:dtype=<f4").dtype,
            DTypeSource::Fixed(DType::F32)
        );
        assert_eq!(
            parse("/a.B/C=1.9:dtype=2/onnx").dtype,
            DTypeSource::Field {
                path: vec![2],
                encoding: DTypeEnum::Onnx
            }
        );
        for text in [
            "/a.B/C=1",
            "/a.B/C@response=3.2:dtype=uint8",
            "/x.Y/Z=1.9:dtype=2/tf:name=8",
        ] {
            let rule = parse(text);
            assert_eq!(parse(&rule.to_string()), rule);
        }
        let rules = TaggedRule::parse_list(" /a.B/C=1 ;; /a.B/D=2:dtype=f32; ").unwrap();
        assert_eq!(rules.len(), 2);
        // The documented multi-line form.
        let rules = TaggedRule::parse_list(
            "/e.v1.I/D=2;\n  /e.v1.I/D@request=3.3:dtype=2:name=1;\n  /e.v1.I/D@response=5:dtype=float32",
        )
        .unwrap();
        assert_eq!(rules.len(), 3);
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("/a.B/C", "expected <method>"),
            ("a.B/C=1", "not a gRPC method path"),
            ("/a.B/C@both=1", "direction \"both\""),
            ("/a.B/C=", "field path is empty"),
            ("/a.B/C=1.x", "\"x\" is not a field number"),
            ("/a.B/C=0", "\"0\" is not a field number"),
            ("/a.B/C=536870912", "is not a field number"),
            ("/a.B/C=1:dtype=float128", "unknown dtype \"float128\""),
            ("/a.B/C=1:dtype=2/numpy", "dtype enum \"numpy\""),
            ("/a.B/C=1:dtype=f4:dtype=f8", "dtype is given twice"),
            ("/a.B/C=1:shape=2", "unknown option \"shape\""),
            ("/a.B/C=1:name", "not key=value"),
            ("/a.B/C=1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1", "longer than 16"),
        ];
        for (rule, expected) in cases {
            let err = rule.parse::<TaggedRule>().unwrap_err().to_string();
            assert!(err.contains(expected), "{rule}: {err}");
            assert!(err.contains(rule), "{rule}: {err}");
        }
        let err = TaggedRule::parse_list("/a.B/C=1;/a.B/D=x").unwrap_err();
        assert_eq!(err.rule, "/a.B/D=x");
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_names_a_problem(text in ".{0,80}") {
            if let Err(e) = text.parse::<TaggedRule>() {
                proptest::prop_assert!(!e.problem.is_empty());
            }
        }

        #[test]
        fn generated_rules_print_and_parse_back(
            method in "/[a-z]{1,6}(\\.[a-z]{1,6}){0,2}/[A-Z][a-z]{0,8}",
            direction in 0u8..3,
            path in proptest::collection::vec(1u32..=MAX_FIELD_NUMBER, 1..=MAX_PATH_LEN),
            dtype in 0usize..4,
            fixed in proptest::sample::select(&DType::ALL[..]),
            reference in proptest::collection::vec(1u32..1000, 1..4),
            name in proptest::option::of(proptest::collection::vec(1u32..1000, 1..4)),
        ) {
            let rule = TaggedRule {
                method,
                direction: [None, Some(Direction::Request), Some(Direction::Response)]
                    [usize::from(direction)],
                path,
                dtype: match dtype {
                    0 => DTypeSource::NdArray,
                    1 => DTypeSource::Fixed(fixed),
                    2 => DTypeSource::Field { path: reference, encoding: DTypeEnum::Tf },
                    _ => DTypeSource::Field { path: reference, encoding: DTypeEnum::Onnx },
                },
                name,
            };
            proptest::prop_assert_eq!(parse(&rule.to_string()), rule);
        }
    }
}
