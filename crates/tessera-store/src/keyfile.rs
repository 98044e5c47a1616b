//! The vault key file: the random database key wrapped by a key-encryption key derived from the
//! unlock factors (`docs/vault.md`).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::VaultError;

const MAGIC: &[u8; 4] = b"TSVK";
const VERSION: u8 = 1;
const KEK_CONTEXT: &str = "tessera v1 vault kek";
/// Size of the key file without the card factor.
pub const KEY_FILE_LEN: usize = 4 + 1 + 16 + 1 + 12 + 16 + 24 + 48;
/// The card section appended when the card factor is on: UID (7) and last SUN counter (4).
const CARD_SECTION_LEN: usize = 7 + 4;
const AAD_LEN: usize = 50;

const FACTOR_PASSWORD: u8 = 1;
const FACTOR_DEVICE: u8 = 2;
const FACTOR_CARD: u8 = 4;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl KdfParams {
    /// The default: 256 MiB, 3 passes, 1 lane (`docs/vault.md`).
    pub const DEFAULT: Self = Self {
        memory_kib: 256 * 1024,
        passes: 3,
        lanes: 1,
    };
    /// The lowest accepted (OWASP's minimum for Argon2id): 19 MiB, 2 passes, 1 lane.
    pub const MINIMUM: Self = Self {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };

    /// Refuses parameters below [`KdfParams::MINIMUM`] or above 4 GiB.
    pub fn check(&self) -> Result<(), VaultError> {
        let ok = self.memory_kib >= Self::MINIMUM.memory_kib
            && self.memory_kib <= 4 * 1024 * 1024
            && self.passes >= Self::MINIMUM.passes
            && self.passes <= 64
            && (1..=16).contains(&self.lanes);
        if ok { Ok(()) } else { Err(VaultError::WeakKdf) }
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a card read gives the vault: the card secret, and the UID and SUN counter of that read.
#[derive(Clone)]
pub struct CardFactor {
    /// The card's UID.
    pub uid: [u8; 7],
    /// The SUN read counter of this read; it must be above the one recorded at the last unlock.
    pub counter: u32,
    /// The secret from the card's proprietary file.
    pub secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for CardFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardFactor")
            .field("uid", &self.uid)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// The secrets that unlock a vault.
pub struct Factors<'a> {
    /// The user's password.
    pub password: &'a [u8],
    /// The device secret from the OS keyring.
    pub device_secret: &'a [u8; 32],
    /// The card read, when the vault uses the card factor.
    pub card: Option<&'a CardFactor>,
}

/// Which card a vault is bound to, and the SUN counter seen at its last unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardBinding {
    /// The card's UID.
    pub uid: [u8; 7],
    /// The highest SUN read counter accepted so far.
    pub counter: u32,
}

/// An unwrapped key file: the database key and the key-encryption key that opened it (kept
/// only to record a new card counter); both zeroized on drop.
pub struct Unwrapped {
    /// The database key.
    pub db_key: Zeroizing<[u8; 32]>,
    kek: Zeroizing<[u8; 32]>,
}

/// The parsed key file.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// Names the keyring entry.
    pub vault_id: [u8; 16],
    /// The card factor, when it is part of the key.
    pub card: Option<CardBinding>,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    salt: [u8; 16],
    nonce: [u8; 24],
    wrapped: [u8; 48],
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("card", &self.card)
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

fn kek(
    kdf: &KdfParams,
    salt: &[u8; 16],
    factors: &Factors<'_>,
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    kdf.check()?;
    let params = Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
        .map_err(|_| VaultError::WeakKdf)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut stretched = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(factors.password, salt, stretched.as_mut())
        .map_err(|_| VaultError::WeakKdf)?;
    let mut h = blake3::Hasher::new_derive_key(KEK_CONTEXT);
    h.update(stretched.as_ref());
    h.update(factors.device_secret);
    if let Some(card) = factors.card {
        h.update(&card.secret[..]);
    }
    Ok(Zeroizing::new(*h.finalize().as_bytes()))
}

impl KeyFile {
    /// The AEAD's associated data: the header, then the card section when there is one.
    fn aad(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        out.extend(self.card_section());
        out
    }

    fn card_section(&self) -> Vec<u8> {
        match &self.card {
            Some(c) => {
                let mut out = c.uid.to_vec();
                out.extend_from_slice(&c.counter.to_be_bytes());
                out
            }
            None => Vec::new(),
        }
    }

    fn header(&self) -> [u8; AAD_LEN] {
        let mut out = [0u8; AAD_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5..21].copy_from_slice(&self.vault_id);
        out[21] =
            FACTOR_PASSWORD | FACTOR_DEVICE | if self.card.is_some() { FACTOR_CARD } else { 0 };
        out[22..26].copy_from_slice(&self.kdf.memory_kib.to_be_bytes());
        out[26..30].copy_from_slice(&self.kdf.passes.to_be_bytes());
        out[30..34].copy_from_slice(&self.kdf.lanes.to_be_bytes());
        out[34..50].copy_from_slice(&self.salt);
        out
    }

    /// Wraps `db_key` under `factors` with a fresh salt and nonce.
    pub fn wrap<R: Rng + CryptoRng>(
        vault_id: [u8; 16],
        kdf: KdfParams,
        db_key: &[u8; 32],
        factors: &Factors<'_>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let mut file = Self {
            vault_id,
            card: factors.card.map(|c| CardBinding {
                uid: c.uid,
                counter: c.counter,
            }),
            kdf,
            salt: rng.random(),
            nonce: [0; 24],
            wrapped: [0; 48],
        };
        let kek = kek(&file.kdf, &file.salt, factors)?;
        file.seal(&kek, db_key, rng)?;
        Ok(file)
    }

    /// Wraps `db_key` under `kek` with a fresh nonce (the salt, parameters and card section as
    /// they are now).
    fn seal<R: Rng + CryptoRng>(
        &mut self,
        kek: &[u8; 32],
        db_key: &[u8; 32],
        rng: &mut R,
    ) -> Result<(), VaultError> {
        self.nonce = rng.random();
        let cipher = XChaCha20Poly1305::new(kek.into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&self.nonce),
                Payload {
                    msg: db_key,
                    aad: &self.aad(),
                },
            )
            .map_err(|_| VaultError::KeyFileDamaged)?;
        self.wrapped.copy_from_slice(&ct);
        Ok(())
    }

    /// After an unlock with the card: the same wrap with the card read's counter recorded, so
    /// a later read must be above it. Needs the key-encryption key of that unlock.
    pub fn with_counter<R: Rng + CryptoRng>(
        &self,
        unlocked: &Unwrapped,
        counter: u32,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let mut next = self.clone();
        let Some(card) = &mut next.card else {
            return Err(VaultError::CardRequired);
        };
        card.counter = counter;
        next.seal(&unlocked.kek, &unlocked.db_key, rng)?;
        Ok(next)
    }

    /// Recovers the database key; [`VaultError::WrongFactor`] if any factor is wrong. With the
    /// card factor, a card with another UID is [`VaultError::WrongCard`] and a SUN counter not
    /// above the recorded one is [`VaultError::CardReplayed`] — both before any key derivation.
    pub fn unwrap_key(&self, factors: &Factors<'_>) -> Result<Unwrapped, VaultError> {
        let card = match (&self.card, factors.card) {
            (None, _) => None,
            (Some(_), None) => return Err(VaultError::CardRequired),
            (Some(bound), Some(read)) => {
                if read.uid != bound.uid {
                    return Err(VaultError::WrongCard);
                }
                if read.counter <= bound.counter {
                    return Err(VaultError::CardReplayed);
                }
                Some(read)
            }
        };
        let kek = kek(
            &self.kdf,
            &self.salt,
            &Factors {
                password: factors.password,
                device_secret: factors.device_secret,
                card,
            },
        )?;
        let cipher = XChaCha20Poly1305::new(kek.as_ref().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&self.nonce),
                    Payload {
                        msg: &self.wrapped,
                        aad: &self.aad(),
                    },
                )
                .map_err(|_| VaultError::WrongFactor)?,
        );
        let mut db_key = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(VaultError::KeyFileDamaged);
        }
        db_key.copy_from_slice(&plain);
        Ok(Unwrapped { db_key, kek })
    }

    /// The encoding in `docs/vault.md`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
        out.extend(self.card_section());
        out
    }

    /// Parses a key file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() < KEY_FILE_LEN || &bytes[..4] != MAGIC {
            return Err(VaultError::KeyFileDamaged);
        }
        if bytes[4] != VERSION {
            return Err(VaultError::NewerVersion);
        }
        let flags = bytes[21];
        if flags & (FACTOR_PASSWORD | FACTOR_DEVICE) != (FACTOR_PASSWORD | FACTOR_DEVICE)
            || flags & !(FACTOR_PASSWORD | FACTOR_DEVICE | FACTOR_CARD) != 0
        {
            return Err(VaultError::KeyFileDamaged);
        }
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let card = if flags & FACTOR_CARD != 0 {
            if bytes.len() != KEY_FILE_LEN + CARD_SECTION_LEN {
                return Err(VaultError::KeyFileDamaged);
            }
            let mut uid = [0u8; 7];
            uid.copy_from_slice(&bytes[KEY_FILE_LEN..KEY_FILE_LEN + 7]);
            Some(CardBinding {
                uid,
                counter: u32_at(KEY_FILE_LEN + 7),
            })
        } else {
            if bytes.len() != KEY_FILE_LEN {
                return Err(VaultError::KeyFileDamaged);
            }
            None
        };
        let mut file = Self {
            vault_id: [0; 16],
            card,
            kdf: KdfParams {
                memory_kib: u32_at(22),
                passes: u32_at(26),
                lanes: u32_at(30),
            },
            salt: [0; 16],
            nonce: [0; 24],
            wrapped: [0; 48],
        };
        file.vault_id.copy_from_slice(&bytes[5..21]);
        file.salt.copy_from_slice(&bytes[34..50]);
        file.nonce.copy_from_slice(&bytes[50..74]);
        file.wrapped.copy_from_slice(&bytes[74..122]);
        Ok(file)
    }

    /// Reads the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(VaultError::NoVault),
            Err(e) => return Err(VaultError::Io(e.kind())),
        };
        Self::from_bytes(&bytes)
    }

    /// Writes the key file atomically (temporary file, fsync, rename, fsync of the directory),
    /// readable by the owner only.
    pub fn store(&self, path: &Path) -> Result<(), VaultError> {
        crate::backup::write_private(path, &self.to_bytes()).map_err(|e| VaultError::Io(e.kind()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn card(uid: u8, counter: u32, secret: u8) -> CardFactor {
        CardFactor {
            uid: [uid; 7],
            counter,
            secret: Zeroizing::new([secret; 32]),
        }
    }

    fn factors<'a>(pw: &'a [u8], dev: &'a [u8; 32], card: Option<&'a CardFactor>) -> Factors<'a> {
        Factors {
            password: pw,
            device_secret: dev,
            card,
        }
    }

    #[test]
    fn wrap_unwrap_and_every_factor_matters() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let (dev, other_dev) = ([7u8; 32], [8u8; 32]);
        let key = [42u8; 32];
        let f = KeyFile::wrap(
            [1; 16],
            KdfParams::MINIMUM,
            &key,
            &factors(b"pw", &dev, None),
            &mut rng,
        )
        .expect("wrap");
        let back = KeyFile::from_bytes(&f.to_bytes()).expect("parse");
        assert_eq!(back, f);
        assert_eq!(
            *back
                .unwrap_key(&factors(b"pw", &dev, None))
                .expect("unwrap")
                .db_key,
            key
        );
        assert!(matches!(
            back.unwrap_key(&factors(b"pW", &dev, None)),
            Err(VaultError::WrongFactor)
        ));
        assert!(matches!(
            back.unwrap_key(&factors(b"pw", &other_dev, None)),
            Err(VaultError::WrongFactor)
        ));

        let with_card = KeyFile::wrap(
            [1; 16],
            KdfParams::MINIMUM,
            &key,
            &factors(b"pw", &dev, Some(&card(4, 10, 9))),
            &mut rng,
        )
        .expect("wrap");
        let with_card = KeyFile::from_bytes(&with_card.to_bytes()).expect("parse");
        assert_eq!(
            with_card.card,
            Some(CardBinding {
                uid: [4; 7],
                counter: 10
            })
        );
        assert!(matches!(
            with_card.unwrap_key(&factors(b"pw", &dev, None)),
            Err(VaultError::CardRequired)
        ));
        assert!(matches!(
            with_card.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 11, 0)))),
            Err(VaultError::WrongFactor)
        ));
        assert!(matches!(
            with_card.unwrap_key(&factors(b"pw", &dev, Some(&card(5, 11, 9)))),
            Err(VaultError::WrongCard)
        ));
        for replayed in [0, 9, 10] {
            assert!(matches!(
                with_card.unwrap_key(&factors(b"pw", &dev, Some(&card(4, replayed, 9)))),
                Err(VaultError::CardReplayed)
            ));
        }
        let opened = with_card
            .unwrap_key(&factors(b"pw", &dev, Some(&card(4, 11, 9))))
            .expect("unwrap");
        assert_eq!(*opened.db_key, key);
        // Recording the new counter: 11 is then a replay, 12 opens.
        let next = with_card
            .with_counter(&opened, 11, &mut rng)
            .expect("rewrap");
        let next = KeyFile::from_bytes(&next.to_bytes()).expect("parse");
        assert!(matches!(
            next.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 11, 9)))),
            Err(VaultError::CardReplayed)
        ));
        assert_eq!(
            *next
                .unwrap_key(&factors(b"pw", &dev, Some(&card(4, 12, 9))))
                .expect("unwrap")
                .db_key,
            key
        );
        // Lowering the recorded counter in the file (to replay an old read) breaks the wrap.
        let mut rolled = next.to_bytes();
        let at = rolled.len() - 1;
        rolled[at] = 0;
        let rolled = KeyFile::from_bytes(&rolled).expect("parse");
        assert!(matches!(
            rolled.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 5, 9)))),
            Err(VaultError::WrongFactor)
        ));
        // So does changing the bound UID.
        let mut other_uid = next.to_bytes();
        other_uid[KEY_FILE_LEN] ^= 1;
        let other_uid = KeyFile::from_bytes(&other_uid).expect("parse");
        let mut moved = card(4, 20, 9);
        moved.uid[0] ^= 1;
        assert!(matches!(
            other_uid.unwrap_key(&factors(b"pw", &dev, Some(&moved))),
            Err(VaultError::WrongFactor)
        ));
    }

    #[test]
    fn the_header_is_authenticated_and_damage_is_typed() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let dev = [7u8; 32];
        let f = KeyFile::wrap(
            [1; 16],
            KdfParams::MINIMUM,
            &[1; 32],
            &factors(b"pw", &dev, None),
            &mut rng,
        )
        .expect("wrap");
        let bytes = f.to_bytes();
        // Flipping a salt or parameter byte: parses, but the unwrap fails.
        for at in [6, 25, 40, 60, 100] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            match KeyFile::from_bytes(&bad) {
                Ok(k) => assert!(
                    k.unwrap_key(&factors(b"pw", &dev, None)).is_err(),
                    "flip at {at} unnoticed"
                ),
                Err(e) => assert!(matches!(
                    e,
                    VaultError::KeyFileDamaged | VaultError::WeakKdf
                )),
            }
        }
        // Adding the card flag (and a card section) is caught by the AEAD.
        let mut bad = bytes.clone();
        bad[21] |= FACTOR_CARD;
        assert!(matches!(
            KeyFile::from_bytes(&bad),
            Err(VaultError::KeyFileDamaged)
        ));
        bad.extend([3; CARD_SECTION_LEN]);
        let k = KeyFile::from_bytes(&bad).expect("parse");
        assert!(matches!(
            k.unwrap_key(&factors(b"pw", &dev, Some(&card(3, u32::MAX, 0)))),
            Err(VaultError::WrongFactor)
        ));
        assert!(matches!(
            KeyFile::from_bytes(&bytes[..100]),
            Err(VaultError::KeyFileDamaged)
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            KeyFile::from_bytes(&long),
            Err(VaultError::KeyFileDamaged)
        ));
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert!(matches!(
            KeyFile::from_bytes(&v2),
            Err(VaultError::NewerVersion)
        ));
        let weak = KdfParams {
            memory_kib: 1024,
            passes: 1,
            lanes: 1,
        };
        assert!(matches!(
            KeyFile::wrap(
                [1; 16],
                weak,
                &[1; 32],
                &factors(b"pw", &dev, None),
                &mut rng
            ),
            Err(VaultError::WeakKdf)
        ));
    }
}
