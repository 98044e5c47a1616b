//! Files (`docs/attachments.md`): the message that names an encrypted blob on the relay and
//! carries what opens it. The blob's bytes never travel inside the session.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::ids::{BlobId, MessageId};

/// Longest file name, in bytes.
pub const MAX_NAME: usize = 255;
/// Longest media type, in bytes.
pub const MAX_MIME: usize = 127;
/// Longest caption, in bytes.
pub const MAX_CAPTION: usize = 4096;
/// The largest file a message may name (the format's limit; relays take less).
pub const MAX_SIZE: u64 = 1 << 40;

/// A file sent in the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Message id, shared by both sides.
    pub id: MessageId,
    /// Sender's clock, ms since the epoch (bounded on arrival).
    pub sent: u64,
    /// The blob on the sender's relay.
    pub blob: BlobId,
    /// The file key (64 hex digits).
    pub key: String,
    /// BLAKE3 of the blob (64 hex digits).
    pub digest: String,
    /// The file's length in bytes (the blob is longer: padding and tags).
    pub size: u64,
    /// The file's name as the sender had it (shown; sanitised before it names a file here).
    pub name: String,
    /// Its media type (`application/octet-stream` when unknown).
    pub mime: String,
    /// Text sent with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caption: String,
    /// Seconds it lives once read (the conversation's timer, `docs/disappearing.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u32>,
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// 64 lowercase hex digits.
pub fn to_hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Attachment {
    /// The file key's bytes.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        hex32(&self.key)
    }

    /// The blob digest's bytes.
    pub fn digest_bytes(&self) -> Option<[u8; 32]> {
        hex32(&self.digest)
    }
}

impl Kind for Attachment {
    const TAG: &'static str = "attachment";
    fn within_limits(&self) -> bool {
        self.key_bytes().is_some()
            && self.digest_bytes().is_some()
            && self.size <= MAX_SIZE
            && !self.name.is_empty()
            && self.name.len() <= MAX_NAME
            && self.mime.len() <= MAX_MIME
            && self.caption.len() <= MAX_CAPTION
            && !self.name.chars().any(char::is_control)
            && !self
                .mime
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
    }
}

/// `name` as a file name here: no directories, no control characters, not hidden, not empty.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.');
    if trimmed.is_empty() {
        "file".into()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    fn sample() -> Attachment {
        Attachment {
            id: MessageId([1; 16]),
            sent: 5,
            blob: BlobId([2; 16]),
            key: to_hex32(&[3; 32]),
            digest: to_hex32(&[4; 32]),
            size: 1000,
            name: "trail map.pdf".into(),
            mime: "application/pdf".into(),
            caption: String::new(),
            expires: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_what_is_out_of_bounds() {
        let a = Content::Attachment(sample());
        let bytes = a.to_bytes().expect("encode");
        assert_eq!(Content::from_bytes(&bytes).expect("parse"), a);
        let bad = |f: fn(&mut Attachment)| {
            let mut s = sample();
            f(&mut s);
            Content::from_bytes(&Content::Attachment(s).to_bytes().expect("encode")).is_err()
        };
        assert!(bad(|s| s.key = "00".into()));
        assert!(bad(|s| s.digest = "zz".repeat(32)));
        assert!(bad(|s| s.name = String::new()));
        assert!(bad(|s| s.name = "a\nb".into()));
        assert!(bad(|s| s.name = "x".repeat(MAX_NAME + 1)));
        assert!(bad(|s| s.mime = "text/plain; x".into()));
        assert!(bad(|s| s.size = MAX_SIZE + 1));
        assert!(bad(|s| s.caption = "c".repeat(MAX_CAPTION + 1)));
    }

    #[test]
    fn a_file_name_never_leaves_its_folder() {
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name("..."), "file");
        assert_eq!(safe_file_name(" .bashrc"), "bashrc");
        assert_eq!(safe_file_name("a\u{7}b:c"), "a_b_c");
        assert_eq!(safe_file_name("résumé.pdf"), "résumé.pdf");
    }
}
