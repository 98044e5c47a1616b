//! The card's master key sealed inside the key file (`docs/card-key.md`): no key able to read
//! the card is kept where a thief with the laptop (its files and its keyring) finds it.
//!
//! Two fixed-size slots follow slot B in a version 3 key file with the card factor:
//!
//! | slot | nonce | sealed | key |
//! |---|---:|---:|---|
//! | C | 24 | 32 + 16 | `BLAKE3-derive-key("tessera v1 card key kek", Argon2id(password) ‖ device secret)` |
//! | D | 24 | 32 + 16 | the same with the duress password's Argon2id (random bytes when none is set) |
//!
//! Associated data: the key file's header, the letter, the card's UID. An unlock derives one
//! Argon2id output and tries both slots, always both (as slots A and B).

use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::{VaultError, keyfile};

const CONTEXT: &str = "tessera v1 card key kek";
const NONCE_LEN: usize = 24;
const SEALED_LEN: usize = 32 + 16;
/// Bytes of the two slots together.
pub const SECTION_LEN: usize = 2 * (NONCE_LEN + SEALED_LEN);

/// Which password opened the section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The account's password (slot C).
    Account,
    /// The duress password (slot D).
    Duress,
}

/// Slots C and D as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CardKeySection {
    nonce_c: [u8; NONCE_LEN],
    slot_c: Vec<u8>,
    nonce_d: [u8; NONCE_LEN],
    slot_d: Vec<u8>,
}

impl std::fmt::Debug for CardKeySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardKeySection(..)")
    }
}

/// The key that seals the card's key for one password: its Argon2id output and the device
/// secret.
pub(crate) fn kek(stretched: &[u8; 32], device_secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(stretched);
    h.update(device_secret);
    Zeroizing::new(*h.finalize().as_bytes())
}

fn aad(header: &[u8], letter: u8, uid: &[u8; 7]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.push(letter);
    out.extend_from_slice(uid);
    out
}

/// The sealed key in one slot, opened: exactly 32 bytes, or nothing.
fn open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ct: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    let plain = keyfile::open(key, nonce, ct, aad)?;
    let mut out = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return None;
    }
    out.copy_from_slice(&plain);
    Some(out)
}

impl CardKeySection {
    /// Seals `master` under `kek_c` (the account password's, slot C) and `kek_d` (the duress
    /// password's, slot D; made from random bytes when none is set, so both cases look alike).
    pub fn seal<R: Rng + CryptoRng>(
        header: &[u8],
        uid: &[u8; 7],
        master: &[u8; 32],
        kek_c: &[u8; 32],
        kek_d: &[u8; 32],
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let (nonce_c, slot_c) = keyfile::seal(kek_c, master, &aad(header, b'C', uid), rng)?;
        let (nonce_d, slot_d) = keyfile::seal(kek_d, master, &aad(header, b'D', uid), rng)?;
        Ok(Self {
            nonce_c,
            slot_c,
            nonce_d,
            slot_d,
        })
    }

    /// The master key, and which password opened it. Both slots are always tried.
    pub fn open(
        &self,
        header: &[u8],
        uid: &[u8; 7],
        key: &[u8; 32],
    ) -> Option<(Zeroizing<[u8; 32]>, Opened)> {
        let c = open(key, &self.nonce_c, &self.slot_c, &aad(header, b'C', uid));
        let d = open(key, &self.nonce_d, &self.slot_d, &aad(header, b'D', uid));
        match (c, d) {
            (Some(m), _) => Some((m, Opened::Account)),
            (None, Some(m)) => Some((m, Opened::Duress)),
            (None, None) => None,
        }
    }

    /// The encoding: nonce C, slot C, nonce D, slot D.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SECTION_LEN);
        out.extend_from_slice(&self.nonce_c);
        out.extend_from_slice(&self.slot_c);
        out.extend_from_slice(&self.nonce_d);
        out.extend_from_slice(&self.slot_d);
        out
    }

    /// Parses [`CardKeySection::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != SECTION_LEN {
            return Err(VaultError::KeyFileDamaged);
        }
        let (c, d) = bytes.split_at(NONCE_LEN + SEALED_LEN);
        let mut nonce_c = [0u8; NONCE_LEN];
        nonce_c.copy_from_slice(&c[..NONCE_LEN]);
        let mut nonce_d = [0u8; NONCE_LEN];
        nonce_d.copy_from_slice(&d[..NONCE_LEN]);
        Ok(Self {
            nonce_c,
            slot_c: c[NONCE_LEN..].to_vec(),
            nonce_d,
            slot_d: d[NONCE_LEN..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    const HEADER: &[u8] = b"TSVK header bytes";
    const UID: [u8; 7] = [4, 1, 2, 3, 4, 5, 6];

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(3)
    }

    #[test]
    fn each_password_opens_its_slot_and_nothing_else_does() {
        let dev = [3u8; 32];
        let (pw, duress) = (kek(&[1; 32], &dev), kek(&[2; 32], &dev));
        let master = [9u8; 32];
        let s =
            CardKeySection::seal(HEADER, &UID, &master, &pw, &duress, &mut rng()).expect("seal");
        let (m, which) = s.open(HEADER, &UID, &pw).expect("account");
        assert_eq!((*m, which), (master, Opened::Account));
        let (m, which) = s.open(HEADER, &UID, &duress).expect("duress");
        assert_eq!((*m, which), (master, Opened::Duress));
        // Another password, device secret, card or header: nothing.
        assert!(s.open(HEADER, &UID, &kek(&[7; 32], &dev)).is_none());
        assert!(s.open(HEADER, &UID, &kek(&[1; 32], &[7; 32])).is_none());
        assert!(s.open(HEADER, &[4; 7], &pw).is_none());
        assert!(s.open(b"another header", &UID, &pw).is_none());
        // The encoding round-trips and a flipped bit opens nothing.
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), SECTION_LEN);
        assert_eq!(CardKeySection::from_bytes(&bytes).expect("parse"), s);
        let mut bad = bytes.clone();
        bad[NONCE_LEN + 3] ^= 1;
        let bad = CardKeySection::from_bytes(&bad).expect("parse");
        assert!(bad.open(HEADER, &UID, &pw).is_none());
        assert!(CardKeySection::from_bytes(&bytes[1..]).is_err());
    }
}
