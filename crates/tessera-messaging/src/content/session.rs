//! Session resets (`docs/messaging.md`, "Quarantine").

use serde::{Deserialize, Serialize};

use super::Kind;

/// "What you sent me could not be decrypted; this is a new session." It travels in a PreKey
/// message of a session the sender built from the recipient's current bundle; decrypting it
/// makes that session the current one on the recipient's side too, so the next messages each
/// way use it. Carries nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {}

impl Kind for Reset {
    const TAG: &'static str = "session_reset";
    fn within_limits(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Content;

    #[test]
    fn a_reset_is_an_empty_object_with_its_tag() {
        let bytes = Content::SessionReset(Reset {}).to_bytes().expect("encode");
        assert_eq!(bytes, br#"{"t":"session_reset"}"#);
        assert_eq!(
            Content::from_bytes(&bytes).expect("parse"),
            Content::SessionReset(Reset {})
        );
        // A newer sender's extra field is ignored.
        assert_eq!(
            Content::from_bytes(br#"{"t":"session_reset","why":"x"}"#).expect("parse"),
            Content::SessionReset(Reset {})
        );
    }
}
