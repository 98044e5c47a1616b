//! What can be done to a message after it was sent (`docs/message-actions.md`): edit it,
//! delete it for everyone, react to it. Replies are texts with `reply_to` ([`super::text`]).

use serde::{Deserialize, Serialize};

use super::Kind;
use super::text::MAX_TEXT;
use crate::ids::MessageId;

/// How long after sending a message its sender may edit it or delete it for everyone, ms.
pub const EDIT_WINDOW_MS: u64 = 24 * 3_600_000;

/// Longest reaction, in bytes (an emoji with its modifiers and joiners).
pub const MAX_EMOJI: usize = 32;

/// The sender's new text for their message `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// The message edited.
    pub target: MessageId,
    /// Sender's clock when editing, ms (orders edits that arrive out of order).
    pub sent: u64,
    /// The new text.
    pub body: String,
}

impl Kind for Edit {
    const TAG: &'static str = "edit";
    fn within_limits(&self) -> bool {
        self.body.len() <= MAX_TEXT
    }
}

/// The sender deletes their message `target` for everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    /// The message deleted.
    pub target: MessageId,
    /// Sender's clock when deleting, ms.
    pub sent: u64,
}

impl Kind for Delete {
    const TAG: &'static str = "delete";
    fn within_limits(&self) -> bool {
        true
    }
}

/// The sender's reaction to `target`; an empty `emoji` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The message reacted to.
    pub target: MessageId,
    /// Sender's clock when reacting, ms (a later reaction replaces an earlier one).
    pub sent: u64,
    /// The reaction, or empty for none.
    pub emoji: String,
}

/// Whether `emoji` is acceptable as a reaction: at most [`MAX_EMOJI`] bytes, no control
/// characters, no spaces (empty means "no reaction").
pub fn valid_emoji(emoji: &str) -> bool {
    emoji.len() <= MAX_EMOJI && !emoji.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl Kind for Reaction {
    const TAG: &'static str = "reaction";
    fn within_limits(&self) -> bool {
        valid_emoji(&self.emoji)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;
    use crate::content::text::Text;

    #[test]
    fn actions_round_trip_and_are_bounded() {
        let target = MessageId([7; 16]);
        for c in [
            Content::Edit(Edit {
                target,
                sent: 3,
                body: "better".into(),
            }),
            Content::Delete(Delete { target, sent: 4 }),
            Content::Reaction(Reaction {
                target,
                sent: 5,
                emoji: "👍🏽".into(),
            }),
            Content::Reaction(Reaction {
                target,
                sent: 6,
                emoji: String::new(),
            }),
            Content::Text(Text {
                id: MessageId([8; 16]),
                sent: 7,
                body: "re".into(),
                reply_to: Some(target),
                expires: None,
                preview: None,
            }),
        ] {
            let bytes = c.to_bytes().expect("encode");
            assert_eq!(Content::from_bytes(&bytes).expect("parse"), c);
        }
        let long = Content::Edit(Edit {
            target,
            sent: 1,
            body: "x".repeat(MAX_TEXT + 1),
        });
        assert!(Content::from_bytes(&long.to_bytes().expect("encode")).is_err());
        for bad in ["x".repeat(MAX_EMOJI + 1), "a b".into(), "\u{7}".into()] {
            let c = Content::Reaction(Reaction {
                target,
                sent: 1,
                emoji: bad,
            });
            assert!(Content::from_bytes(&c.to_bytes().expect("encode")).is_err());
        }
        assert!(Content::from_bytes(br#"{"t":"delete","target":"zz","sent":1}"#).is_err());
        // A text without a reply is written as before.
        let plain = Content::Text(Text {
            id: MessageId([8; 16]),
            sent: 7,
            body: "x".into(),
            reply_to: None,
            expires: None,
            preview: None,
        });
        assert!(
            !String::from_utf8(plain.to_bytes().expect("encode"))
                .expect("utf-8")
                .contains("reply_to")
        );
    }
}
