#![doc = include_str!("../README.md")]

mod address;
mod error;
mod frame;

pub use address::{RelayAddress, RelayHost, SpkiPin};
pub use error::{AddressError, ProtoError};
pub use frame::{
    BlobId, Body, ErrorCode, FRAME_VERSION, Frame, MAX_BLOB_PIECE, MAX_ENVELOPE_LEN, MAX_FRAME_LEN,
    MAX_PREKEYS_PER_UPLOAD, WireAccountId, WireOneTimePrekey, WirePrekey,
};

/// HTTP paths served on the relay's TLS port.
pub mod paths {
    /// Liveness probe: `200 OK` with body `ok` while the relay accepts connections.
    pub const HEALTH: &str = "/healthz";
    /// WebSocket endpoint for version 1 of the client protocol.
    pub const WEBSOCKET_V1: &str = "/v1/ws";
}
