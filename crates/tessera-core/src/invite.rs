//! Invite codes: what one person gives another to become contacts (`docs/engine.md` §invites).
//!
//! Text form: `tessera-invite:1:` followed by unpadded base64url of `account id (32) ||
//! relay pin (32) || relay port (2) || host length (1) || host || name length (1) || name`.
//! The account id is the fingerprint of the inviter's identity keys: the relay's bundle must
//! carry keys that hash to it, so a relay cannot slip in its own. The QR code holds the same
//! text.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_crypto::AccountId;
use tessera_proto::{RelayAddress, SpkiPin};

use crate::CoreError;

const PREFIX: &str = "tessera-invite:1:";
/// The longest suggested name an invite carries, in bytes of UTF-8.
const NAME_MAX: usize = 64;

/// The longest prefix of `name` that fits in `max` bytes and ends on a character boundary (an
/// invite must never carry half a character: the other side would refuse it as malformed).
fn name_prefix(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A decoded invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The inviter's account (and identity fingerprint).
    pub account_id: AccountId,
    /// The inviter's relay.
    pub relay: RelayAddress,
    /// The name the inviter suggests for themselves (may be empty).
    pub name: String,
}

impl Invite {
    /// The text form.
    pub fn to_text(&self) -> String {
        let host = self.relay.host.to_string();
        let host = host.as_bytes();
        let name = name_prefix(&self.name, NAME_MAX).as_bytes();
        let mut b = Vec::with_capacity(32 + 32 + 2 + 2 + host.len() + name.len());
        b.extend_from_slice(&self.account_id.0);
        b.extend_from_slice(self.relay.pin.as_bytes());
        b.extend_from_slice(&self.relay.port.to_be_bytes());
        b.push(host.len().min(255) as u8);
        b.extend_from_slice(&host[..host.len().min(255)]);
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(b))
    }

    /// Parses the text form (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(CoreError::BadInvite)?;
        let b = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CoreError::BadInvite)?;
        if b.len() < 32 + 32 + 2 + 1 + 1 {
            return Err(CoreError::BadInvite);
        }
        let mut account = [0u8; 32];
        account.copy_from_slice(&b[..32]);
        let mut pin = [0u8; 32];
        pin.copy_from_slice(&b[32..64]);
        let port = u16::from_be_bytes([b[64], b[65]]);
        let host_len = usize::from(b[66]);
        let host = b.get(67..67 + host_len).ok_or(CoreError::BadInvite)?;
        let name_len = usize::from(*b.get(67 + host_len).ok_or(CoreError::BadInvite)?);
        let name = b
            .get(68 + host_len..68 + host_len + name_len)
            .ok_or(CoreError::BadInvite)?;
        if b.len() != 68 + host_len + name_len {
            return Err(CoreError::BadInvite);
        }
        let host = std::str::from_utf8(host).map_err(|_| CoreError::BadInvite)?;
        let relay: RelayAddress = format!("tessera://{host}:{port}/{}", SpkiPin::from_bytes(pin))
            .parse()
            .map_err(|_| CoreError::BadInvite)?;
        Ok(Self {
            account_id: AccountId(account),
            relay,
            name: String::from_utf8(name.to_vec()).map_err(|_| CoreError::BadInvite)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let relay: RelayAddress =
            "tessera://relay.example.org:4443/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .parse()
                .expect("address");
        let invite = Invite {
            account_id: AccountId([7; 32]),
            relay,
            name: "Zoë".into(),
        };
        let text = invite.to_text();
        assert!(text.starts_with(PREFIX));
        assert_eq!(
            Invite::parse(&format!("  {text}\n")).expect("parse"),
            invite
        );
        for cut in [PREFIX.len(), text.len() - 1, text.len() - 5] {
            assert!(Invite::parse(&text[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Invite::parse(&text.replace(PREFIX, "tessera-invite:2:")).is_err());
        assert!(Invite::parse(&format!("{text}AA")).is_err());
    }

    /// Review finding: a name longer than the invite's 64 bytes was cut at byte 64, which can be
    /// inside a character; the invite then failed to parse on the other side.
    #[test]
    fn invite_name_is_cut_on_a_character_boundary() {
        let relay: RelayAddress =
            "tessera://relay.example.org:4443/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                .parse()
                .expect("address");
        // 63 ASCII bytes, then a two-byte "é" that straddles byte 64; then 4-byte emoji.
        for name in [
            format!("{}é and more", "a".repeat(63)),
            "😀".repeat(20),
            "Zoë".repeat(30),
        ] {
            let invite = Invite {
                account_id: AccountId([9; 32]),
                relay: relay.clone(),
                name: name.clone(),
            };
            let parsed = Invite::parse(&invite.to_text()).expect("a long name still parses");
            assert!(parsed.name.len() <= NAME_MAX);
            assert!(name.starts_with(&parsed.name));
            assert!(
                parsed.name.len() > NAME_MAX - 4,
                "all whole characters that fit are kept"
            );
        }
        assert_eq!(name_prefix("aé", 2), "a");
        assert_eq!(name_prefix("aé", 3), "aé");
        assert_eq!(name_prefix("", 64), "");
    }
}
