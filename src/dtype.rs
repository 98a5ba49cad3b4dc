//! Element types of the tensors bloscar finds, and their sizes in bytes.
//!
//! Each protocol names element types its own way: KServe v2 by datatype strings
//! (`"FP32"`), TensorFlow by `DataType` enum values (`DT_FLOAT = 1`), ONNX by
//! `TensorProto.DataType` values, and bloscar's own `proto/bloscar/v1/ndarray.proto` by
//! its `DType` enum. [`DType`] is the common vocabulary; its [`Display`](std::fmt::Display)
//! form (numpy-style lower case names such as `float32`) is what metrics show.

use std::fmt;
use std::str::FromStr;

/// A tensor element type, as named by the protocols bloscar understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// One byte, 0 or 1.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16 (the upper half of an IEEE single).
    BF16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// A pair of `F32` (real, imaginary).
    Complex64,
    /// A pair of `F64` (real, imaginary).
    Complex128,
    /// 8-bit float with 5 exponent and 2 mantissa bits.
    F8E5M2,
    /// 8-bit float with 4 exponent and 3 mantissa bits, finite values and NaN only.
    F8E4M3Fn,
    /// Variable-length elements (KServe BYTES, TF strings): compressed with element size 1.
    Bytes,
}

impl DType {
    /// Every element type, in the order of the bloscar `DType` enum values 1, 2, ...
    pub const ALL: [DType; 18] = [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::Complex64,
        DType::Complex128,
        DType::F8E5M2,
        DType::F8E4M3Fn,
        DType::Bytes,
    ];

    /// Size of one element in bytes: the Blosc typesize. `Bytes` counts as 1 because its
    /// elements have no fixed width.
    pub const fn elem_size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 | DType::F8E5M2 | DType::F8E4M3Fn => 1,
            DType::Bytes => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
            // Shuffling works on the scalar parts of a complex number.
            DType::Complex64 => 4,
            DType::Complex128 => 8,
        }
    }

    /// Width of one element in the data: [`DType::elem_size`], except that a complex
    /// number counts both its parts; `None` for variable-length elements.
    pub const fn item_size(self) -> Option<usize> {
        match self {
            DType::Bytes => None,
            DType::Complex64 | DType::Complex128 => Some(2 * self.elem_size()),
            _ => Some(self.elem_size()),
        }
    }

    /// The KServe v2 datatype string (`"FP32"`, `"BYTES"`, ...), exactly as the protocol
    /// spells it; `None` for types KServe does not have.
    pub fn from_kserve(datatype: &str) -> Option<DType> {
        Some(match datatype {
            "BOOL" => DType::Bool,
            "UINT8" => DType::U8,
            "UINT16" => DType::U16,
            "UINT32" => DType::U32,
            "UINT64" => DType::U64,
            "INT8" => DType::I8,
            "INT16" => DType::I16,
            "INT32" => DType::I32,
            "INT64" => DType::I64,
            "FP16" => DType::F16,
            "BF16" => DType::BF16,
            "FP32" => DType::F32,
            "FP64" => DType::F64,
            "BYTES" => DType::Bytes,
            _ => return None,
        })
    }

    /// The KServe v2 datatype string of this type, if KServe has one.
    pub const fn kserve_name(self) -> Option<&'static str> {
        Some(match self {
            DType::Bool => "BOOL",
            DType::U8 => "UINT8",
            DType::U16 => "UINT16",
            DType::U32 => "UINT32",
            DType::U64 => "UINT64",
            DType::I8 => "INT8",
            DType::I16 => "INT16",
            DType::I32 => "INT32",
            DType::I64 => "INT64",
            DType::F16 => "FP16",
            DType::BF16 => "BF16",
            DType::F32 => "FP32",
            DType::F64 => "FP64",
            DType::Bytes => "BYTES",
            DType::Complex64 | DType::Complex128 | DType::F8E5M2 | DType::F8E4M3Fn => {
                return None;
            }
        })
    }

    /// A TensorFlow `DataType` enum value (`DT_FLOAT = 1`, ...). Reference types
    /// (`DT_FLOAT_REF = 101`, ...) map like their base type. `None` for types whose
    /// layout bloscar does not know (quantized types, `DT_INT4`, resources, variants).
    pub fn from_tf(value: u64) -> Option<DType> {
        let base = if (101..200).contains(&value) {
            value - 100
        } else {
            value
        };
        Some(match base {
            1 => DType::F32,
            2 => DType::F64,
            3 => DType::I32,
            4 => DType::U8,
            5 => DType::I16,
            6 => DType::I8,
            7 => DType::Bytes,
            8 => DType::Complex64,
            9 => DType::I64,
            10 => DType::Bool,
            14 => DType::BF16,
            17 => DType::U16,
            18 => DType::Complex128,
            19 => DType::F16,
            22 => DType::U32,
            23 => DType::U64,
            24 => DType::F8E5M2,
            25 => DType::F8E4M3Fn,
            _ => return None,
        })
    }

    /// The TensorFlow `DataType` enum value of this type.
    pub const fn tf_value(self) -> u64 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
            DType::I32 => 3,
            DType::U8 => 4,
            DType::I16 => 5,
            DType::I8 => 6,
            DType::Bytes => 7,
            DType::Complex64 => 8,
            DType::I64 => 9,
            DType::Bool => 10,
            DType::BF16 => 14,
            DType::U16 => 17,
            DType::Complex128 => 18,
            DType::F16 => 19,
            DType::U32 => 22,
            DType::U64 => 23,
            DType::F8E5M2 => 24,
            DType::F8E4M3Fn => 25,
        }
    }

    /// An ONNX `TensorProto.DataType` value (`FLOAT = 1`, ...); `None` for types whose
    /// layout bloscar does not know.
    pub fn from_onnx(value: u64) -> Option<DType> {
        Some(match value {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::I64,
            8 => DType::Bytes,
            9 => DType::Bool,
            10 => DType::F16,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            14 => DType::Complex64,
            15 => DType::Complex128,
            16 => DType::BF16,
            19 => DType::F8E5M2,
            17 => DType::F8E4M3Fn,
            _ => return None,
        })
    }

    /// A value of the `bloscar.v1.DType` enum of `proto/bloscar/v1/ndarray.proto`
    /// (1 = bool ... 18 = bytes, the order of [`DType::ALL`]); 0 (unspecified) and
    /// unknown values give `None`.
    pub fn from_bloscar(value: u64) -> Option<DType> {
        let index = usize::try_from(value).ok()?.checked_sub(1)?;
        DType::ALL.get(index).copied()
    }

    /// The `bloscar.v1.DType` enum value of this type.
    pub fn bloscar_value(self) -> u32 {
        // ALL lists every variant once, so the search always succeeds.
        let index = DType::ALL.iter().position(|d| *d == self).unwrap_or(0);
        index as u32 + 1
    }

    /// The canonical numpy-style name, as [`Display`](fmt::Display) prints it.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::Complex64 => "complex64",
            DType::Complex128 => "complex128",
            DType::F8E5M2 => "float8_e5m2",
            DType::F8E4M3Fn => "float8_e4m3fn",
            DType::Bytes => "bytes",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name was not one [`DType::from_str`] knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dtype {0:?} (expected a name such as float32, fp32, f32, <f4, DT_FLOAT, uint8, bytes)"
)]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;

    /// Accepts, case-insensitively, the numpy names (`float32`), KServe names (`FP32`),
    /// TensorFlow names (`DT_FLOAT`), short names (`f32`, `u8`) and little-endian numpy
    /// type strings (`<f4`, `|u1`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (numpy_typestr, key) = match lower.strip_prefix(['<', '|', '=']) {
            Some(rest) => (true, rest),
            None => (false, lower.strip_prefix("dt_").unwrap_or(&lower)),
        };
        Ok(match key {
            // numpy type strings count bytes (`<i8` is 8 bytes), short names count bits.
            "i8" if numpy_typestr => DType::I64,
            "u8" if numpy_typestr => DType::U64,
            "bool" | "b1" => DType::Bool,
            "uint8" | "u8" | "u1" => DType::U8,
            "uint16" | "u16" | "u2" => DType::U16,
            "uint32" | "u32" | "u4" => DType::U32,
            "uint64" | "u64" => DType::U64,
            "int8" | "i8" | "i1" => DType::I8,
            "int16" | "i16" | "i2" => DType::I16,
            "int32" | "i32" | "i4" => DType::I32,
            "int64" | "i64" => DType::I64,
            "float16" | "fp16" | "f16" | "half" | "f2" => DType::F16,
            "bfloat16" | "bf16" => DType::BF16,
            "float32" | "fp32" | "f32" | "float" | "f4" => DType::F32,
            "float64" | "fp64" | "f64" | "double" | "f8" => DType::F64,
            "complex64" | "c8" => DType::Complex64,
            "complex128" | "c16" => DType::Complex128,
            "float8_e5m2" => DType::F8E5M2,
            "float8_e4m3fn" => DType::F8E4M3Fn,
            "bytes" | "string" | "str" => DType::Bytes,
            _ => return Err(UnknownDType(s.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_is_the_element_width_in_the_data() {
        assert_eq!(DType::F32.item_size(), Some(4));
        assert_eq!(DType::Complex64.item_size(), Some(8));
        assert_eq!(DType::Complex128.item_size(), Some(16));
        assert_eq!(DType::Bytes.item_size(), None);
    }

    #[test]
    fn kserve_names_round_trip() {
        for dtype in DType::ALL {
            if let Some(name) = dtype.kserve_name() {
                assert_eq!(DType::from_kserve(name), Some(dtype));
                assert_eq!(name.parse::<DType>(), Ok(dtype));
            }
        }
        assert_eq!(
            DType::from_kserve("fp32"),
            None,
            "KServe names are upper case"
        );
        assert_eq!(DType::from_kserve("FP8"), None);
    }

    #[test]
    fn tf_values_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(DType::from_tf(dtype.tf_value()), Some(dtype));
            assert_eq!(DType::from_tf(dtype.tf_value() + 100), Some(dtype));
        }
        assert_eq!(DType::from_tf(0), None);
        assert_eq!(DType::from_tf(29), None, "DT_INT4 layout is not known");
    }

    #[test]
    fn bloscar_values_round_trip() {
        for (i, dtype) in DType::ALL.into_iter().enumerate() {
            assert_eq!(dtype.bloscar_value(), i as u32 + 1);
            assert_eq!(
                DType::from_bloscar(u64::from(dtype.bloscar_value())),
                Some(dtype)
            );
        }
        assert_eq!(DType::from_bloscar(0), None);
        assert_eq!(DType::from_bloscar(19), None);
        assert_eq!(DType::from_bloscar(u64::MAX), None);
    }

    #[test]
    fn display_parses_back() {
        for dtype in DType::ALL {
            assert_eq!(dtype.to_string().parse::<DType>(), Ok(dtype));
        }
    }

    #[test]
    fn numpy_type_strings() {
        assert_eq!("<f4".parse::<DType>(), Ok(DType::F32));
        assert_eq!("<f8".parse::<DType>(), Ok(DType::F64));
        assert_eq!("<i8".parse::<DType>(), Ok(DType::I64));
        assert_eq!("<u8".parse::<DType>(), Ok(DType::U64));
        assert_eq!("|u1".parse::<DType>(), Ok(DType::U8));
        assert_eq!("u8".parse::<DType>(), Ok(DType::U8));
        assert_eq!("i8".parse::<DType>(), Ok(DType::I8));
        assert_eq!("DT_FLOAT".parse::<DType>(), Ok(DType::F32));
        assert_eq!("DT_HALF".parse::<DType>(), Ok(DType::F16));
        assert!(
            ">f4".parse::<DType>().is_err(),
            "big-endian data is not supported"
        );
        let err = "float128".parse::<DType>().unwrap_err();
        assert!(err.to_string().contains("float128"));
    }

    #[test]
    fn elem_sizes() {
        assert_eq!(DType::Bytes.elem_size(), 1);
        assert_eq!(DType::BF16.elem_size(), 2);
        assert_eq!(DType::Complex128.elem_size(), 8);
        assert_eq!(DType::F64.elem_size(), 8);
    }
}
