//! Call signals (`docs/calls.md`): handed to the call layer, never stored.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::ids::CallId;

/// Longest SDP in a call signal, in bytes.
pub const MAX_SDP: usize = 16 * 1024;
/// Longest ICE candidate line, in bytes.
pub const MAX_CANDIDATE: usize = 1024;
/// An offer older than this when it arrives is not rung.
pub const STALE_OFFER_MS: u64 = 60_000;

/// A call signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The call.
    pub call: CallId,
    /// Sender's clock, ms since the epoch (an offer older than a minute is not rung).
    pub sent: u64,
    /// What.
    pub signal: CallSignal,
}

impl Kind for Call {
    const TAG: &'static str = "call";
    fn within_limits(&self) -> bool {
        self.signal.within_limits()
    }
}

/// A call signal's body (the call layer's `Signal`, in wire form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
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

impl Call {
    /// Whether this is an offer that waited too long to be rung at `now`.
    pub fn is_stale_offer(&self, now: u64) -> bool {
        matches!(self.signal, CallSignal::Offer { .. })
            && now.saturating_sub(self.sent) > STALE_OFFER_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    fn call(signal: CallSignal) -> Content {
        Content::Call(Call {
            call: CallId([3; 16]),
            sent: 9,
            signal,
        })
    }

    #[test]
    fn call_signals_round_trip_and_their_limits_hold() {
        for ok in [
            call(CallSignal::Offer {
                sdp: "v=0".into(),
                video: true,
                secret: "ab".repeat(32),
            }),
            call(CallSignal::Hangup),
        ] {
            assert_eq!(
                Content::from_bytes(&ok.to_bytes().expect("encode")).expect("parse"),
                ok
            );
        }
        for bad in [
            call(CallSignal::Answer {
                sdp: "x".repeat(MAX_SDP + 1),
                secret: "ab".repeat(32),
            }),
            call(CallSignal::Offer {
                sdp: "v=0".into(),
                video: false,
                secret: "short".into(),
            }),
        ] {
            assert!(
                Content::from_bytes(&bad.to_bytes().expect("encode")).is_err(),
                "{bad:?}"
            );
        }
        assert!(
            Content::from_bytes(br#"{"t":"call","call":"12","sent":1,"signal":{"k":"ringing"}}"#)
                .is_err()
        );
        assert!(Content::from_bytes(br#"{"t":"call","call":"03030303030303030303030303030303","sent":1,"signal":{"k":"dial_everyone"}}"#).is_err());
    }

    #[test]
    fn an_offer_older_than_a_minute_is_stale() {
        let Content::Call(c) = call(CallSignal::Offer {
            sdp: "v=0".into(),
            video: false,
            secret: "ab".repeat(32),
        }) else {
            unreachable!()
        };
        assert!(!c.is_stale_offer(9 + STALE_OFFER_MS));
        assert!(c.is_stale_offer(10 + STALE_OFFER_MS));
        let Content::Call(h) = call(CallSignal::Hangup) else {
            unreachable!()
        };
        assert!(!h.is_stale_offer(u64::MAX));
    }
}
