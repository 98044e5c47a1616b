//! Session resets (`docs/messaging.md`, "Quarantine").

use serde::{Deserialize, Serialize};

use super::Kind;

/// "What you sent me could not be decrypted; this is a new session." It travels in a PreKey
/// message of a session the sender built from the recipient's current bundle; decrypting it
/// makes that session the current one on the recipient's side too, so the next messages each
/// way use it. It may carry the sender device's current certificate (standard base64 without
/// padding, as in a contact request): a device restored from a backup has a new envelope key
/// that its contacts must seal to from then on (`docs/backup.md`); the recipient keeps it if it
/// verifies and is newer than the one it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// The sender device's certificate, if it changed in a way contacts must learn now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl Kind for Reset {
    const TAG: &'static str = "session_reset";
    fn within_limits(&self) -> bool {
        self.certificate
            .as_ref()
            .is_none_or(|c| c.len() <= super::contact::MAX_CERTIFICATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Content;

    #[test]
    fn a_reset_is_an_empty_object_with_its_tag() {
        let bytes = Content::SessionReset(Reset::default())
            .to_bytes()
            .expect("encode");
        assert_eq!(bytes, br#"{"t":"session_reset"}"#);
        assert_eq!(
            Content::from_bytes(&bytes).expect("parse"),
            Content::SessionReset(Reset::default())
        );
        // A newer sender's extra field is ignored.
        assert_eq!(
            Content::from_bytes(br#"{"t":"session_reset","why":"x"}"#).expect("parse"),
            Content::SessionReset(Reset::default())
        );
        // With a certificate; an oversized one is refused.
        let with = Content::SessionReset(Reset {
            certificate: Some("AAAA".into()),
        });
        let bytes = with.to_bytes().expect("encode");
        assert_eq!(bytes, br#"{"t":"session_reset","certificate":"AAAA"}"#);
        assert_eq!(Content::from_bytes(&bytes).expect("parse"), with);
        let huge = format!(
            r#"{{"t":"session_reset","certificate":"{}"}}"#,
            "A".repeat(crate::content::contact::MAX_CERTIFICATE + 1)
        );
        assert!(Content::from_bytes(huge.as_bytes()).is_err());
    }
}
