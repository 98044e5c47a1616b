//! Ids as types: an account, a device, a conversation, a message and an outbox entry are
//! different things and cannot be passed for one another.
//!
//! `Debug` shows a short prefix only (enough to tell two apart in a test failure, not enough to
//! look anyone up from a log); the full text forms are explicit methods.

use std::fmt;

pub use tessera_crypto::AccountId;

/// One device of an account (1 for the device that created it; linked devices get others).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DeviceId(pub u32);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {}", self.0)
    }
}

/// Where an envelope goes: one device of one account.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Recipient {
    /// The account.
    pub account: AccountId,
    /// Its device.
    pub device: DeviceId,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

macro_rules! id16 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random<R: rand::RngCore + ?Sized>(rng: &mut R) -> Self {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                Self(b)
            }

            /// 32 lowercase hex digits (the form inside message content).
            pub fn to_hex(&self) -> String {
                hex(&self.0)
            }

            /// Parses [`Self::to_hex`]; `None` unless exactly 32 hex digits.
            pub fn from_hex(text: &str) -> Option<Self> {
                parse_hex16(text).map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), hex(&self.0[..3]))
            }
        }
    };
}

id16!(
    /// A message, shared by sender and recipients (receipts, edits and replies name it).
    MessageId
);
id16!(
    /// A conversation on this device (`docs/messaging.md`, "Conversations").
    ConversationId
);
id16!(
    /// A call.
    CallId
);
id16!(
    /// An attachment blob on the relay (`docs/attachments.md`): random, chosen by the sender.
    BlobId
);
id16!(
    /// An envelope as the receiver identifies it for what it leaves in a conversation: derived
    /// from its replay key (or its bytes, when it could not be opened), so a second copy of the
    /// same envelope has the same id.
    EnvelopeId
);

/// An entry of this device's outbox (a row number in the vault).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct OutboxId(pub i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        let id = MessageId([0xab; 16]);
        assert_eq!(MessageId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.to_hex().len(), 32);
        for bad in [
            "",
            "00",
            &"g".repeat(32),
            &"0".repeat(33),
            "ééééééééééééééé",
        ] {
            assert_eq!(MessageId::from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_shows_a_prefix_only() {
        let text = format!("{:?}", ConversationId([0x12; 16]));
        assert_eq!(text, "ConversationId(121212…)");
    }
}

macro_rules! hex_serde {
    ($($name:ident),*) => {$(
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a 32-digit hex id"))
            }
        }
    )*};
}

hex_serde!(MessageId, CallId, BlobId);
