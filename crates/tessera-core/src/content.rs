//! What travels inside a Signal message between two Tessera devices (`docs/engine.md`).
//!
//! JSON, one object per message, `t` naming the kind. It is encrypted by the Signal session and
//! then sealed in an envelope, so only the two devices ever see it. Parsing is strict: unknown
//! kinds and fields are refused, and every string has a length limit.

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Longest text message, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;
/// Longest display name, in bytes.
pub const MAX_NAME: usize = 64;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 512;

/// Delivery or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// The recipient's device stored the messages.
    Delivered,
    /// The recipient opened them.
    Read,
}

/// One message between devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum Content {
    /// "Let us be contacts": the first message after adding someone from their invite.
    ContactRequest {
        /// The sender's display name.
        name: String,
        /// The sender's relay address (where the recipient will find them).
        relay: String,
        /// The sender device's certificate (standard base64): its envelope key, for replies.
        certificate: String,
    },
    /// The recipient accepted.
    ContactAccept {
        /// The accepter's display name.
        name: String,
    },
    /// The recipient rejected.
    ContactReject,
    /// A text message.
    Text {
        /// Message id (32 hex digits), shared by both sides.
        id: String,
        /// Sender's clock, ms since the epoch.
        sent: u64,
        /// The text.
        body: String,
    },
    /// Receipts for earlier messages.
    Receipt {
        /// Delivered or read.
        kind: ReceiptKind,
        /// The message ids.
        ids: Vec<String>,
    },
    /// A call signal (`docs/calls.md`): handed to the call layer, never stored.
    Call {
        /// Call id (32 hex digits).
        call: String,
        /// Sender's clock, ms since the epoch (an offer older than a minute is not rung).
        sent: u64,
        /// What.
        signal: CallSignal,
    },
}

/// Longest SDP in a call signal, in bytes.
pub const MAX_SDP: usize = 16 * 1024;
/// Longest ICE candidate line, in bytes.
pub const MAX_CANDIDATE: usize = 1024;

/// A call signal's body (the call layer's `Signal`, in wire form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case", deny_unknown_fields)]
pub enum CallSignal {
    /// The caller's SDP offer and frame secret (64 hex digits).
    Offer {
        /// SDP.
        sdp: String,
        /// Video wanted.
        video: bool,
        /// The caller's frame secret.
        secret: String,
    },
    /// The callee's device is alerting.
    Ringing,
    /// The callee's SDP answer and frame secret.
    Answer {
        /// SDP.
        sdp: String,
        /// The callee's frame secret.
        secret: String,
    },
    /// One ICE candidate.
    Ice {
        /// The candidate line.
        candidate: String,
    },
    /// Declined.
    Reject,
    /// In another call.
    Busy,
    /// Ended or cancelled.
    Hangup,
}

fn is_secret(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl CallSignal {
    fn within_limits(&self) -> bool {
        match self {
            Self::Offer { sdp, secret, .. } | Self::Answer { sdp, secret } => {
                sdp.len() <= MAX_SDP && is_secret(secret)
            }
            Self::Ice { candidate } => candidate.len() <= MAX_CANDIDATE,
            Self::Ringing | Self::Reject | Self::Busy | Self::Hangup => true,
        }
    }
}

/// 16 bytes as 32 lowercase hex digits.
pub fn id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`id_hex`].
pub fn parse_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Content {
    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks limits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CoreError> {
        let c: Content = serde_json::from_slice(bytes).map_err(|_| CoreError::BadContent)?;
        let ok = match &c {
            Content::ContactRequest {
                name,
                relay,
                certificate,
            } => name.len() <= MAX_NAME && relay.len() <= 512 && certificate.len() <= 16 * 1024,
            Content::ContactAccept { name } => name.len() <= MAX_NAME,
            Content::ContactReject => true,
            Content::Text { id, body, .. } => parse_id(id).is_some() && body.len() <= MAX_TEXT,
            Content::Receipt { ids, .. } => {
                ids.len() <= MAX_RECEIPT_IDS && ids.iter().all(|i| parse_id(i).is_some())
            }
            Content::Call { call, signal, .. } => {
                parse_id(call).is_some() && signal.within_limits()
            }
        };
        if ok {
            Ok(c)
        } else {
            Err(CoreError::BadContent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_round_trip() {
        let t = Content::Text {
            id: id_hex(&[0xab; 16]),
            sent: 5,
            body: "hi \"there\"".into(),
        };
        assert_eq!(Content::from_bytes(&t.to_bytes()).expect("parse"), t);
        for bad in [
            &br#"{"t":"text","id":"00","sent":1,"body":"x"}"#[..],
            br#"{"t":"text","id":"abababababababababababababababab","sent":1,"body":"x","extra":1}"#,
            br#"{"t":"launch_missiles"}"#,
            br#"not json"#,
        ] {
            assert!(Content::from_bytes(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = Content::ContactAccept {
            name: "x".repeat(MAX_NAME + 1),
        };
        assert!(Content::from_bytes(&long.to_bytes()).is_err());
        assert_eq!(parse_id(&id_hex(&[1; 16])), Some([1; 16]));
    }

    #[test]
    fn call_signals_round_trip_and_their_limits_hold() {
        let offer = Content::Call {
            call: id_hex(&[3; 16]),
            sent: 9,
            signal: CallSignal::Offer {
                sdp: "v=0".into(),
                video: true,
                secret: "ab".repeat(32),
            },
        };
        assert_eq!(
            Content::from_bytes(&offer.to_bytes()).expect("parse"),
            offer
        );
        let hangup = Content::Call {
            call: id_hex(&[3; 16]),
            sent: 9,
            signal: CallSignal::Hangup,
        };
        assert_eq!(
            Content::from_bytes(&hangup.to_bytes()).expect("parse"),
            hangup
        );
        for bad in [
            Content::Call {
                call: "12".into(),
                sent: 1,
                signal: CallSignal::Ringing,
            },
            Content::Call {
                call: id_hex(&[3; 16]),
                sent: 1,
                signal: CallSignal::Answer {
                    sdp: "x".repeat(MAX_SDP + 1),
                    secret: "ab".repeat(32),
                },
            },
            Content::Call {
                call: id_hex(&[3; 16]),
                sent: 1,
                signal: CallSignal::Offer {
                    sdp: "v=0".into(),
                    video: false,
                    secret: "short".into(),
                },
            },
        ] {
            assert!(Content::from_bytes(&bad.to_bytes()).is_err(), "{bad:?}");
        }
        assert!(Content::from_bytes(br#"{"t":"call","call":"03030303030303030303030303030303","sent":1,"signal":{"k":"dial_everyone"}}"#).is_err());
    }
}
