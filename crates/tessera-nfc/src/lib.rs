#![doc = include_str!("../README.md")]

pub mod card;
pub mod ndef;
pub mod protocol;
pub mod reader;
pub mod tag;
pub mod vpcd;

pub use protocol::apdu::Status;
pub use protocol::auth::Authentication;
pub use protocol::session::{CommMode, Session};

/// Why a card operation failed. No variant carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NfcError {
    /// The card answered with an error status.
    #[error("the card refused: {0:?}")]
    Card(Status),
    /// A response MAC did not verify (tampered, or another session).
    #[error("the card's response failed its integrity check")]
    Integrity,
    /// The card could not prove it holds the key (its RndA' was wrong).
    #[error("the card did not prove knowledge of the key")]
    CardNotAuthentic,
    /// Bytes that do not have the expected shape.
    #[error("malformed {0}")]
    Malformed(&'static str),
}
