//! Calls in the engine (`docs/calls.md`): the call layer's [`Signal`] to and from its wire form
//! in [`Content::Call`](crate::Content::Call), sent through the Signal session.

pub use tessera_calls::call::{CallId, Signal};

use tessera_messaging::content::call::CallSignal;

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The wire form of a signal.
pub(crate) fn to_wire(s: &Signal) -> CallSignal {
    match s {
        Signal::Offer { sdp, video, secret } => CallSignal::Offer {
            sdp: sdp.clone(),
            video: *video,
            secret: hex32(secret),
        },
        Signal::Ringing => CallSignal::Ringing,
        Signal::Answer { sdp, secret } => CallSignal::Answer {
            sdp: sdp.clone(),
            secret: hex32(secret),
        },
        Signal::Ice { candidate } => CallSignal::Ice {
            candidate: candidate.clone(),
        },
        Signal::Reject => CallSignal::Reject,
        Signal::Busy => CallSignal::Busy,
        Signal::Hangup => CallSignal::Hangup,
    }
}

/// A signal from its wire form (`None` if a secret is not 64 hex digits; the engine already
/// refuses those).
pub(crate) fn from_wire(s: &CallSignal) -> Option<Signal> {
    Some(match s {
        CallSignal::Offer { sdp, video, secret } => Signal::Offer {
            sdp: sdp.clone(),
            video: *video,
            secret: unhex32(secret)?,
        },
        CallSignal::Ringing => Signal::Ringing,
        CallSignal::Answer { sdp, secret } => Signal::Answer {
            sdp: sdp.clone(),
            secret: unhex32(secret)?,
        },
        CallSignal::Ice { candidate } => Signal::Ice {
            candidate: candidate.clone(),
        },
        CallSignal::Reject => Signal::Reject,
        CallSignal::Busy => Signal::Busy,
        CallSignal::Hangup => Signal::Hangup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_survives_the_wire_form() {
        let all = [
            Signal::Offer {
                sdp: "v=0 offer".into(),
                video: true,
                secret: [0xa5; 32],
            },
            Signal::Ringing,
            Signal::Answer {
                sdp: "v=0 answer".into(),
                secret: [0x0f; 32],
            },
            Signal::Ice {
                candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
            },
            Signal::Reject,
            Signal::Busy,
            Signal::Hangup,
        ];
        for s in all {
            assert_eq!(from_wire(&to_wire(&s)), Some(s.clone()), "{s:?}");
        }
        assert_eq!(
            from_wire(&CallSignal::Answer {
                sdp: String::new(),
                secret: "zz".repeat(32)
            }),
            None
        );
    }
}
