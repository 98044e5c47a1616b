//! Text messages.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::ids::MessageId;

/// Longest text message, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;

/// A text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// Message id, shared by both sides.
    pub id: MessageId,
    /// Sender's clock, ms since the epoch (bounded on arrival: `inbound::bound_sent`).
    pub sent: u64,
    /// The text.
    pub body: String,
    /// The message this one replies to (`docs/message-actions.md`); left out when none, as
    /// every earlier version wrote a text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Seconds this message lives once read (the conversation's timer when it was sent,
    /// `docs/disappearing.md`); left out when it stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u32>,
}

impl Kind for Text {
    const TAG: &'static str = "text";
    fn within_limits(&self) -> bool {
        self.body.len() <= MAX_TEXT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    #[test]
    fn a_text_longer_than_the_limit_is_refused() {
        let long = Content::Text(Text {
            id: MessageId([1; 16]),
            sent: 1,
            body: "x".repeat(MAX_TEXT + 1),
            reply_to: None,
            expires: None,
        });
        assert!(Content::from_bytes(&long.to_bytes().expect("encode")).is_err());
    }
}
