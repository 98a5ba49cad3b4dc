//! Element types of the tensors bloscar finds, and their sizes in bytes.

/// A tensor element type, as named by the protocols bloscar understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    Complex64,
    Complex128,
    /// Variable-length elements (KServe BYTES, TF strings): compressed with element size 1.
    Bytes,
}
