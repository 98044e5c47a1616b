#![doc = include_str!("../README.md")]

pub mod content;
pub mod conversation;
pub mod delivery;
pub mod ids;
pub mod inbound;
pub mod receive;
pub mod store;

pub use content::Content;
pub use conversation::{Conversation, ConversationKind};
pub use delivery::{Delivery, Effect, FailReason, Item, Outcome};
pub use ids::{
    AccountId, BlobId, CallId, ConversationId, DeviceId, EnvelopeId, MessageId, OutboxId, Recipient,
};

/// Why a messaging operation failed. No variant carries message content or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// Content that does not parse or breaks a limit (the kind, or what is wrong).
    #[error("malformed message content ({0})")]
    BadContent(&'static str),
}
