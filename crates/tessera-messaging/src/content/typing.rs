//! Typing indicators (`docs/conversations.md` §Typing): shown for a few seconds, never stored,
//! never receipted, ignored when stale.

use serde::{Deserialize, Serialize};

use super::Kind;

/// How old (by the receiver's clock) an indicator may be and still be shown, ms: one that waited
/// in an outbox while the relay was away means nothing by the time it arrives.
pub const TYPING_FRESH_MS: u64 = 15_000;

/// The sender started (`on`) or stopped typing in the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// Sender's clock, ms.
    pub sent: u64,
    /// Started or stopped.
    pub on: bool,
}

impl Kind for Typing {
    const TAG: &'static str = "typing";
    fn within_limits(&self) -> bool {
        true
    }
}
