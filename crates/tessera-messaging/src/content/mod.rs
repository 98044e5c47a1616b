//! What travels inside a Signal message between two Tessera devices (`docs/messaging.md`,
//! "Content").
//!
//! One JSON object per message, `t` naming the kind. It is encrypted by the Signal session and
//! sealed in an envelope, so only the devices of the conversation ever see it.
//!
//! Each kind is one module (its fields, limits and tag) and one line in `kinds!` below; the
//! rest of the system matches on [`Content`]. Parsing is strict about what it knows — limits on
//! every string and list, ids that must be ids — and lenient about what it does not: a field it
//! does not know is ignored (a newer sender may add one), and a kind it does not know becomes
//! [`Content::Unsupported`], which the conversation shows as "unsupported message" instead of
//! dropping it silently.

pub mod action;
pub mod attachment;
pub mod call;
pub mod contact;
pub mod receipt;
pub mod session;
pub mod text;
pub mod timer;
pub mod typing;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::MessagingError;

/// Longest content accepted, in bytes (a text of [`text::MAX_TEXT`] plus its JSON).
pub const MAX_CONTENT: usize = 80 * 1024;
/// Longest kind tag accepted (an unknown one is kept to show, so it is bounded).
pub const MAX_TAG: usize = 64;

/// One kind of content: its tag on the wire and its limits.
pub trait Kind: Serialize + DeserializeOwned {
    /// The value of `t`.
    const TAG: &'static str;
    /// Whether the parsed value is within this kind's limits.
    fn within_limits(&self) -> bool;
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// One message between devices.
        ///
        /// Not `non_exhaustive` on purpose: a new kind must be handled by every driver that
        /// matches on it, and the compiler says where.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Content {
            $($(#[$doc])* $variant($ty),)*
            /// A kind this build does not know (from a newer version): kept and shown as
            /// "unsupported message".
            Unsupported {
                /// Its tag.
                kind: String,
            },
        }

        /// The tags this build knows.
        pub const KNOWN_KINDS: &[&str] = &[$(<$ty as Kind>::TAG,)*];

        impl Content {
            /// The tag on the wire.
            pub fn tag(&self) -> &str {
                match self {
                    $(Self::$variant(_) => <$ty as Kind>::TAG,)*
                    Self::Unsupported { kind } => kind,
                }
            }

            /// The encoding. `Unsupported` has none: it is never sent.
            pub fn to_bytes(&self) -> Result<Vec<u8>, MessagingError> {
                match self {
                    $(Self::$variant(k) => encode(<$ty as Kind>::TAG, k),)*
                    Self::Unsupported { .. } => Err(MessagingError::BadContent("unsupported kind")),
                }
            }

            /// Parses and checks limits.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, MessagingError> {
                let (tag, fields) = split(bytes)?;
                $(if tag == <$ty as Kind>::TAG {
                    return decode::<$ty>(fields).map(Self::$variant);
                })*
                Ok(Self::Unsupported { kind: tag })
            }
        }

        $(impl From<$ty> for Content {
            fn from(k: $ty) -> Self {
                Self::$variant(k)
            }
        })*
    };
}

kinds! {
    /// "Let us be contacts": the first message after adding someone from their invite.
    ContactRequest(contact::Request),
    /// The recipient accepted.
    ContactAccept(contact::Accept),
    /// The recipient rejected.
    ContactReject(contact::Reject),
    /// A text message.
    Text(text::Text),
    /// Receipts for earlier messages.
    Receipt(receipt::Receipt),
    /// A call signal (`docs/calls.md`): handed to the call layer, never stored.
    Call(call::Call),
    /// A new Signal session after a message that could not be decrypted.
    SessionReset(session::Reset),
    /// The sender deleted their account.
    AccountDeleted(contact::Deleted),
    /// The sender's new text for a message of theirs.
    Edit(action::Edit),
    /// The sender deleted a message of theirs for everyone.
    Delete(action::Delete),
    /// The sender's reaction to a message (or its removal).
    Reaction(action::Reaction),
    /// The conversation's disappearing-message timer changed.
    Timer(timer::Timer),
    /// The sender started or stopped typing.
    Typing(typing::Typing),
    /// A file (`docs/attachments.md`).
    Attachment(attachment::Attachment),
}

/// `t` first, then the kind's fields in declaration order, as every earlier version wrote it.
#[derive(Serialize)]
struct Tagged<'a, K> {
    t: &'a str,
    #[serde(flatten)]
    fields: &'a K,
}

fn encode<K: Kind>(tag: &str, kind: &K) -> Result<Vec<u8>, MessagingError> {
    serde_json::to_vec(&Tagged {
        t: tag,
        fields: kind,
    })
    .map_err(|_| MessagingError::BadContent("encode"))
}

fn split(bytes: &[u8]) -> Result<(String, Map<String, Value>), MessagingError> {
    if bytes.len() > MAX_CONTENT {
        return Err(MessagingError::BadContent("too long"));
    }
    let mut fields: Map<String, Value> = serde_json::from_slice(bytes)
        .map_err(|_| MessagingError::BadContent("not a JSON object"))?;
    let tag = match fields.remove("t") {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TAG => t,
        _ => return Err(MessagingError::BadContent("no kind")),
    };
    Ok((tag, fields))
}

fn decode<K: Kind>(fields: Map<String, Value>) -> Result<K, MessagingError> {
    let k: K = serde_json::from_value(Value::Object(fields))
        .map_err(|_| MessagingError::BadContent(K::TAG))?;
    if k.within_limits() {
        Ok(k)
    } else {
        Err(MessagingError::BadContent(K::TAG))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;

    #[test]
    fn round_trip_keeps_the_wire_form_of_earlier_versions() {
        let t = Content::Text(text::Text {
            id: MessageId([0xab; 16]),
            sent: 5,
            body: "hi \"there\"".into(),
            reply_to: None,
            expires: None,
            preview: None,
        });
        let bytes = t.to_bytes().expect("encode");
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            r#"{"t":"text","id":"abababababababababababababababab","sent":5,"body":"hi \"there\""}"#
        );
        assert_eq!(Content::from_bytes(&bytes).expect("parse"), t);
        let reject = Content::ContactReject(contact::Reject {});
        assert_eq!(
            reject.to_bytes().expect("encode"),
            br#"{"t":"contact_reject"}"#
        );
        assert_eq!(
            Content::from_bytes(br#"{"t":"contact_reject"}"#).expect("parse"),
            reject
        );
    }

    #[test]
    fn malformed_content_is_refused() {
        for bad in [
            &br#"{"t":"text","id":"00","sent":1,"body":"x"}"#[..],
            br#"{"t":"text","sent":1,"body":"x"}"#,
            br#"{"id":"abababababababababababababababab"}"#,
            br#"{"t":""}"#,
            br#"{"t":5}"#,
            br#"["t","text"]"#,
            br#"not json"#,
        ] {
            assert!(
                Content::from_bytes(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"t":"{}"}}"#, "k".repeat(MAX_TAG + 1));
        assert!(Content::from_bytes(long.as_bytes()).is_err());
        let huge = format!(r#"{{"t":"x","pad":"{}"}}"#, "a".repeat(MAX_CONTENT));
        assert!(Content::from_bytes(huge.as_bytes()).is_err());
    }

    #[test]
    fn unknown_kinds_are_kept_and_unknown_fields_ignored() {
        let c = Content::from_bytes(br#"{"t":"sticker","pack":"cats"}"#).expect("parse");
        assert_eq!(
            c,
            Content::Unsupported {
                kind: "sticker".into()
            }
        );
        assert!(c.to_bytes().is_err(), "an unsupported kind is never sent");
        let newer = br#"{"t":"text","id":"abababababababababababababababab","sent":1,"body":"x","mood":"y"}"#;
        assert!(matches!(Content::from_bytes(newer), Ok(Content::Text(_))));
    }

    #[test]
    fn every_known_kind_has_one_tag() {
        let mut tags = KNOWN_KINDS.to_vec();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), KNOWN_KINDS.len());
    }
}
