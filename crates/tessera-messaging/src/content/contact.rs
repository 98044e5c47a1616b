//! Contact requests and their answers.

use serde::{Deserialize, Serialize};

use super::Kind;

/// Longest display name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest relay address, in bytes.
pub const MAX_RELAY: usize = 512;
/// Longest device certificate (base64), in bytes.
pub const MAX_CERTIFICATE: usize = 16 * 1024;

/// "Let us be contacts": the first message after adding someone from their invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The sender's display name.
    pub name: String,
    /// The sender's relay address (where the recipient will find them).
    pub relay: String,
    /// The sender device's certificate (standard base64): its envelope key, for replies.
    pub certificate: String,
}

impl Kind for Request {
    const TAG: &'static str = "contact_request";
    fn within_limits(&self) -> bool {
        self.name.len() <= MAX_NAME
            && self.relay.len() <= MAX_RELAY
            && self.certificate.len() <= MAX_CERTIFICATE
    }
}

/// The recipient accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The accepter's display name.
    pub name: String,
    /// The accepter device's current certificate (standard base64). The requester had the one
    /// in the invite's bundle; it may have been replaced since (a rotation, a restore from a
    /// backup, `docs/backup.md`). Absent from clients before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl Kind for Accept {
    const TAG: &'static str = "contact_accept";
    fn within_limits(&self) -> bool {
        self.name.len() <= MAX_NAME
            && self
                .certificate
                .as_ref()
                .is_none_or(|c| c.len() <= MAX_CERTIFICATE)
    }
}

/// The recipient rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {}

impl Kind for Reject {
    const TAG: &'static str = "contact_reject";
    fn within_limits(&self) -> bool {
        true
    }
}

/// The sender deleted their account (`docs/leaving.md`): the last message they send to each
/// contact, through the Signal session (so it is theirs), before their relay forgets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {}

impl Kind for Deleted {
    const TAG: &'static str = "account_deleted";
    fn within_limits(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    #[test]
    fn names_are_bounded() {
        let long = Content::ContactAccept(Accept {
            name: "x".repeat(MAX_NAME + 1),
            certificate: None,
        });
        assert!(Content::from_bytes(&long.to_bytes().expect("encode")).is_err());
        let ok = Content::ContactAccept(Accept {
            name: "Ada".into(),
            certificate: None,
        });
        assert_eq!(
            Content::from_bytes(&ok.to_bytes().expect("encode")).expect("parse"),
            ok
        );
    }

    #[test]
    fn an_acceptance_may_carry_a_bounded_certificate() {
        // Without one it is byte-for-byte what earlier clients wrote and read.
        let plain = Content::ContactAccept(Accept {
            name: "Ada".into(),
            certificate: None,
        });
        assert_eq!(
            plain.to_bytes().expect("encode"),
            br#"{"t":"contact_accept","name":"Ada"}"#
        );
        let with = Content::ContactAccept(Accept {
            name: "Ada".into(),
            certificate: Some("AAAA".into()),
        });
        let bytes = with.to_bytes().expect("encode");
        assert_eq!(
            bytes,
            br#"{"t":"contact_accept","name":"Ada","certificate":"AAAA"}"#
        );
        assert_eq!(Content::from_bytes(&bytes).expect("parse"), with);
        let over = format!(
            r#"{{"t":"contact_accept","name":"Ada","certificate":"{}"}}"#,
            "A".repeat(MAX_CERTIFICATE + 1)
        );
        assert!(Content::from_bytes(over.as_bytes()).is_err());
    }
}
