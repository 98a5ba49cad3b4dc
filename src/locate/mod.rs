//! Finding tensor byte ranges inside serialized protobuf messages, without a full decode.
