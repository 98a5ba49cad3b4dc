//! `BLOSCAR_*` environment configuration.
//!
//! Contract (implemented with `envy` from an iterator of (key, value) pairs, so tests never
//! call `set_var`). Variables, defaults:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | BLOSCAR_MODE | inbound | inbound, outbound or both |
//! | BLOSCAR_INBOUND_LISTEN | 0.0.0.0:9440 | inbound listener (the pod's service port) |
//! | BLOSCAR_INBOUND_FORWARD | 127.0.0.1:8001 | local app the inbound side forwards to |
//! | BLOSCAR_OUTBOUND_LISTEN | 127.0.0.1:9441 | outbound listener for the local client app |
//! | BLOSCAR_OUTBOUND_FORWARD | (required for outbound) | host:port of the peer's inbound sidecar |
//! | BLOSCAR_ADMIN_LISTEN | 0.0.0.0:9449 | /live /ready /metrics |
//! | BLOSCAR_CODEC | auto | auto, or codec[:level[:shuffle]] e.g. lz4:5:byte |
//! | BLOSCAR_MIN_TENSOR_BYTES | 10240 | tensors smaller than this are left alone |
//! | BLOSCAR_MAX_MESSAGE_BYTES | 67108864 | largest gRPC message buffered (after decompression) |
//! | BLOSCAR_UNKNOWN_PEER | identity | identity (until the peer advertises bloscar) or encode |
//! | BLOSCAR_LINK_MBPS | 1000 | link bandwidth the auto-tuner optimises for |
//! | BLOSCAR_NDARRAY_RULES | (empty) | where ndarrays live in users' own messages |
//! | BLOSCAR_SHUTDOWN_GRACE_SECS | 30 | drain period after SIGTERM |
//! | BLOSCAR_LOG | info | tracing filter |
//! | BLOSCAR_LOG_FORMAT | text | text or json |
