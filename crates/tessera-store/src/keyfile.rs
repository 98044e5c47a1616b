//! The vault key file: the random database key wrapped by a key-encryption key derived from the
//! unlock factors (`docs/vault.md`).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, Rng, RngCore as _};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::card_key::{self, CardKeySection};

const MAGIC: &[u8; 4] = b"TSVK";
/// The version written. Version 1 (no duress slot) and version 2 (the card's key kept in the
/// OS keyring, not in slots C and D) are read and rewritten as version 3 at the next unlock.
const VERSION: u8 = 3;
const VERSION_2: u8 = 2;
const VERSION_1: u8 = 1;
const KEK_CONTEXT: &str = "tessera v1 vault kek";
const HEADER_LEN: usize = 50;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Slot A's plaintext: the database key, then the duress password's Argon2id output (random
/// when no duress password is set).
const SLOT_A_PLAIN: usize = 32 + 32;
const SLOT_A_LEN: usize = SLOT_A_PLAIN + TAG_LEN;
/// Slot B's plaintext: a two-byte length, the decoy record, zero padding.
const SLOT_B_PLAIN: usize = 1024;
const SLOT_B_LEN: usize = SLOT_B_PLAIN + TAG_LEN;
/// The longest decoy record the duress slot holds.
pub const DURESS_RECORD_MAX: usize = SLOT_B_PLAIN - 2;
/// Size of the key file without the card factor.
pub const KEY_FILE_LEN: usize = HEADER_LEN + NONCE_LEN + SLOT_A_LEN + NONCE_LEN + SLOT_B_LEN;
/// Size of a version 1 key file without the card factor.
const KEY_FILE_V1_LEN: usize = HEADER_LEN + NONCE_LEN + 48;
/// The card section appended when the card factor is on: UID (7) and last SUN counter (4).
const CARD_SECTION_LEN: usize = 7 + 4;
/// Size of the key file with the card factor: slots C and D, then the card section.
pub const KEY_FILE_CARD_LEN: usize = KEY_FILE_LEN + card_key::SECTION_LEN + CARD_SECTION_LEN;

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

/// Slots in the card's secret file (`docs/vault.md` §Card secret rotation).
pub const CARD_SLOTS: usize = 2;

/// What a card read gives the vault: the two slots of the card's secret file (the card secret
/// the vault is wrapped to is in one of them), the UID and SUN counter of that read, and the
/// card's master key the read was made with (sealed in the key file, `docs/card-key.md`).
#[derive(Clone)]
pub struct CardFactor {
    /// The card's UID.
    pub uid: [u8; 7],
    /// The SUN read counter of this read; it must be above the one recorded at the last unlock.
    pub counter: u32,
    /// The slots of the card's secret file. A new vault (or a newly enrolled card) is wrapped
    /// to slot 0; each unlock's rotation moves the secret to the other slot.
    pub slots: Zeroizing<[[u8; 32]; CARD_SLOTS]>,
    /// The card's master key (all of its AES keys derive from it).
    pub key: Zeroizing<[u8; 32]>,
}

impl CardFactor {
    /// A read whose slot 0 holds `secret` (slot 1 all zero), of a card whose master key is
    /// [`CardFactor::TEST_KEY`]: for tests and tools.
    pub fn with_secret(uid: [u8; 7], counter: u32, secret: [u8; 32]) -> Self {
        let mut slots = Zeroizing::new([[0u8; 32]; CARD_SLOTS]);
        slots[0] = secret;
        Self {
            uid,
            counter,
            slots,
            key: Zeroizing::new(Self::TEST_KEY),
        }
    }

    /// The master key [`CardFactor::with_secret`] gives its card.
    pub const TEST_KEY: [u8; 32] = [0x6b; 32];

    /// The secret in `slot`.
    pub fn secret(&self, slot: usize) -> &[u8; 32] {
        &self.slots[slot.min(CARD_SLOTS - 1)]
    }
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

/// What slot A of a key file holds, after an unlock with the account's password: the database
/// key, the key-encryption key that opened it, and the duress slot as it stands (needed to
/// record a new card counter or to rewrap without losing the duress password). Zeroized on
/// drop.
pub struct Unwrapped {
    /// The database key.
    pub db_key: Zeroizing<[u8; 32]>,
    kek: Zeroizing<[u8; 32]>,
    /// Argon2id of the password under this file's salt (a card secret rotation wraps to the
    /// new secret without a second key derivation).
    stretched: Zeroizing<[u8; 32]>,
    /// The slot of the card's secret file that opened the file (`None` without the card).
    card_slot: Option<usize>,
    /// Argon2id of the duress password under this file's salt (random bytes when none is set).
    duress_stretched: Zeroizing<[u8; 32]>,
    /// The key slot B is sealed under (from the duress password's Argon2id output).
    kek_b: Zeroizing<[u8; 32]>,
    /// The keys slots C and D are sealed under (the password's and the duress password's).
    kek_c: Zeroizing<[u8; 32]>,
    kek_d: Zeroizing<[u8; 32]>,
    /// The card's master key (`None` without the card factor).
    card_key: Option<Zeroizing<[u8; 32]>>,
    /// The decoy record, when a duress password is set.
    duress_record: Option<Zeroizing<Vec<u8>>>,
}

impl Unwrapped {
    /// Whether a duress password is set.
    pub fn duress_configured(&self) -> bool {
        self.duress_record.is_some()
    }

    /// The slot of the card's secret file whose secret opened the file (`None` without the
    /// card factor).
    pub fn card_slot(&self) -> Option<usize> {
        self.card_slot
    }

    /// The card's master key the unlock read the card with (`None` without the card factor).
    pub fn card_key(&self) -> Option<&[u8; 32]> {
        self.card_key.as_deref()
    }

    /// What a file made by [`KeyFile::wrap_stretched`] for a new vault holds (no duress
    /// password; the card's slot 0), for rotating that vault's card secret.
    pub(crate) fn for_new_vault<R: Rng + CryptoRng>(
        db_key: Zeroizing<[u8; 32]>,
        stretched: &[u8; 32],
        device_secret: &[u8; 32],
        card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Self {
        let card_slot = card.map(|_| 0);
        let duress_stretched = Zeroizing::new(rng.random::<[u8; 32]>());
        Self {
            db_key,
            kek: kek_of(stretched, device_secret, secret_in(card, 0)),
            stretched: Zeroizing::new(*stretched),
            card_slot,
            kek_b: kek_of(&duress_stretched, device_secret, secret_in(card, 0)),
            kek_c: card_key::kek(stretched, device_secret),
            kek_d: card_key::kek(&duress_stretched, device_secret),
            card_key: card.map(|c| c.key.clone()),
            duress_stretched,
            duress_record: None,
        }
    }
}

/// What an unlock opened.
pub enum Unwrap {
    /// The account's password: slot A.
    Account(Box<Unwrapped>),
    /// The duress password: slot B. Holds the decoy record and the password's Argon2id output
    /// under this file's salt (so the decoy vault is made without a second key derivation).
    Duress {
        /// The decoy record stored with the duress password.
        record: Zeroizing<Vec<u8>>,
        /// Argon2id of the typed password under the key file's salt.
        stretched: Zeroizing<[u8; 32]>,
        /// The slot of the card's secret file that opened slot B.
        card_slot: Option<usize>,
    },
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
    version: u8,
    salt: [u8; 16],
    nonce_a: [u8; NONCE_LEN],
    slot_a: Vec<u8>,
    nonce_b: [u8; NONCE_LEN],
    slot_b: Vec<u8>,
    /// Slots C and D: the card's master key (version 3 with the card factor).
    card_keys: Option<CardKeySection>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("version", &self.version)
            .field("card", &self.card)
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

/// Argon2id of `password` under `salt` with `kdf`.
fn stretch(
    kdf: &KdfParams,
    salt: &[u8; 16],
    password: &[u8],
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    kdf.check()?;
    let params = Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
        .map_err(|_| VaultError::WeakKdf)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut stretched = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, stretched.as_mut())
        .map_err(|_| VaultError::WeakKdf)?;
    Ok(stretched)
}

/// The key-encryption key: BLAKE3 over the stretched password, the device secret and the card
/// secret (`docs/vault.md`). The same for both slots; only the password differs.
fn kek_of(
    stretched: &[u8; 32],
    device_secret: &[u8; 32],
    card_secret: Option<&[u8; 32]>,
) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key(KEK_CONTEXT);
    h.update(stretched);
    h.update(device_secret);
    if let Some(secret) = card_secret {
        h.update(&secret[..]);
    }
    Zeroizing::new(*h.finalize().as_bytes())
}

/// The card secret in `slot` of `card`'s read.
fn secret_in(card: Option<&CardFactor>, slot: usize) -> Option<&[u8; 32]> {
    card.map(|c| c.secret(slot))
}

pub(crate) fn seal<R: Rng + CryptoRng>(
    kek: &[u8; 32],
    plain: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Result<([u8; NONCE_LEN], Vec<u8>), VaultError> {
    let nonce: [u8; NONCE_LEN] = rng.random();
    let ct = XChaCha20Poly1305::new(kek.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| VaultError::KeyFileDamaged)?;
    Ok((nonce, ct))
}

pub(crate) fn open(
    kek: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ct: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    XChaCha20Poly1305::new(kek.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

/// Slot B's plaintext: length, record, zero padding.
fn pad_record(record: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let len = u16::try_from(record.len())
        .ok()
        .filter(|_| record.len() <= DURESS_RECORD_MAX)
        .ok_or(VaultError::DuressRecordTooLarge {
            max: DURESS_RECORD_MAX,
        })?;
    let mut plain = Zeroizing::new(vec![0u8; SLOT_B_PLAIN]);
    plain[..2].copy_from_slice(&len.to_be_bytes());
    plain[2..2 + record.len()].copy_from_slice(record);
    Ok(plain)
}

fn unpad_record(plain: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let len = usize::from(u16::from_be_bytes([*plain.first()?, *plain.get(1)?]));
    plain.get(2..2 + len).map(|r| Zeroizing::new(r.to_vec()))
}

/// What goes into slot B when a file is sealed.
enum SlotB<'a> {
    /// Random bytes: no duress password (indistinguishable from a sealed record).
    Empty,
    /// A decoy record sealed under this key-encryption key.
    Record(&'a [u8; 32], &'a [u8]),
}

impl KeyFile {
    /// Slot A's associated data: the header, the slot letter, the whole card section.
    fn aad_a(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        if self.version != VERSION_1 {
            out.push(b'A');
        }
        out.extend(self.card_section());
        out
    }

    /// Slot B's associated data: the header, the slot letter, the card's UID — not the counter,
    /// so recording a new counter (which needs only slot A's key) leaves slot B valid.
    fn aad_b(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        out.push(b'B');
        if let Some(c) = &self.card {
            out.extend_from_slice(&c.uid);
        }
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

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = self.version;
        out[5..21].copy_from_slice(&self.vault_id);
        out[21] =
            FACTOR_PASSWORD | FACTOR_DEVICE | if self.card.is_some() { FACTOR_CARD } else { 0 };
        out[22..26].copy_from_slice(&self.kdf.memory_kib.to_be_bytes());
        out[26..30].copy_from_slice(&self.kdf.passes.to_be_bytes());
        out[30..34].copy_from_slice(&self.kdf.lanes.to_be_bytes());
        out[34..50].copy_from_slice(&self.salt);
        out
    }

    fn blank(
        vault_id: [u8; 16],
        kdf: KdfParams,
        salt: [u8; 16],
        card: Option<&CardFactor>,
    ) -> Self {
        Self::blank_bound(
            vault_id,
            kdf,
            salt,
            card.map(|c| CardBinding {
                uid: c.uid,
                counter: c.counter,
            }),
        )
    }

    fn blank_bound(
        vault_id: [u8; 16],
        kdf: KdfParams,
        salt: [u8; 16],
        card: Option<CardBinding>,
    ) -> Self {
        Self {
            vault_id,
            card,
            kdf,
            version: VERSION,
            salt,
            nonce_a: [0; NONCE_LEN],
            slot_a: Vec::new(),
            nonce_b: [0; NONCE_LEN],
            slot_b: Vec::new(),
            card_keys: None,
        }
    }

    /// Seals slots C and D (`docs/card-key.md`) with the card's master key under `kek_c` (the
    /// password's) and `kek_d` (the duress password's), when the file has the card factor;
    /// call it after the other slots (the header must be final).
    fn seal_card_keys<R: Rng + CryptoRng>(
        &mut self,
        kek_c: &[u8; 32],
        kek_d: &[u8; 32],
        card_key: Option<&[u8; 32]>,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        self.card_keys = match &self.card {
            None => None,
            Some(card) => {
                let key = card_key.ok_or(VaultError::CardRequired)?;
                Some(CardKeySection::seal(
                    &self.header(),
                    &card.uid,
                    key,
                    kek_c,
                    kek_d,
                    rng,
                )?)
            }
        };
        Ok(())
    }

    /// Everything sealed again for what `unlocked` holds, with fresh nonces (a new card counter,
    /// a file from an older version): the same keys, the same duress password.
    fn reseal<R: Rng + CryptoRng>(
        &mut self,
        unlocked: &Unwrapped,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        let b = match &unlocked.duress_record {
            Some(record) => SlotB::Record(&unlocked.kek_b, record),
            None => SlotB::Empty,
        };
        self.seal_slots(
            &unlocked.kek,
            &unlocked.db_key,
            &unlocked.duress_stretched,
            b,
            rng,
        )?;
        self.seal_card_keys(&unlocked.kek_c, &unlocked.kek_d, unlocked.card_key(), rng)
    }

    /// Seals slot A (database key and duress stretch) under `kek` with a fresh nonce, and slot B
    /// as `b` says, as the current version.
    fn seal_slots<R: Rng + CryptoRng>(
        &mut self,
        kek: &[u8; 32],
        db_key: &[u8; 32],
        duress_stretched: &[u8; 32],
        b: SlotB<'_>,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        self.version = VERSION;
        let mut plain = Zeroizing::new([0u8; SLOT_A_PLAIN]);
        plain[..32].copy_from_slice(db_key);
        plain[32..].copy_from_slice(duress_stretched);
        (self.nonce_a, self.slot_a) = seal(kek, plain.as_ref(), &self.aad_a(), rng)?;
        match b {
            SlotB::Empty => {
                self.nonce_b = rng.random();
                self.slot_b = vec![0u8; SLOT_B_LEN];
                rng.fill_bytes(&mut self.slot_b);
            }
            SlotB::Record(kek_b, record) => {
                let plain = pad_record(record)?;
                (self.nonce_b, self.slot_b) = seal(kek_b, &plain, &self.aad_b(), rng)?;
            }
        }
        Ok(())
    }

    /// Seals both slots for `kek` (and `card_secret`) with what `unlocked` holds: the database
    /// key, the duress password's Argon2id output, and its decoy record in slot B sealed again
    /// for the same card secret (random bytes when no duress password is set). The salt must be
    /// the one `unlocked` came from.
    fn seal_keeping_duress<R: Rng + CryptoRng>(
        &mut self,
        kek: &[u8; 32],
        unlocked: &Unwrapped,
        device_secret: &[u8; 32],
        card_secret: Option<&[u8; 32]>,
        rng: &mut R,
    ) -> Result<(), VaultError> {
        let kek_b = kek_of(&unlocked.duress_stretched, device_secret, card_secret);
        let b = match &unlocked.duress_record {
            Some(record) => SlotB::Record(&kek_b, record),
            None => SlotB::Empty,
        };
        self.seal_slots(kek, &unlocked.db_key, &unlocked.duress_stretched, b, rng)
    }

    /// Wraps `db_key` under `factors` with a fresh salt and nonce, without a duress password.
    pub fn wrap<R: Rng + CryptoRng>(
        vault_id: [u8; 16],
        kdf: KdfParams,
        db_key: &[u8; 32],
        factors: &Factors<'_>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let salt: [u8; 16] = rng.random();
        let stretched = stretch(&kdf, &salt, factors.password)?;
        Self::wrap_stretched(vault_id, kdf, salt, &stretched, factors, db_key, rng)
    }

    /// As [`KeyFile::wrap`] with the password already stretched under `salt` (a vault made by a
    /// duress unlock reuses that unlock's key derivation). `factors.password` is not used.
    pub(crate) fn wrap_stretched<R: Rng + CryptoRng>(
        vault_id: [u8; 16],
        kdf: KdfParams,
        salt: [u8; 16],
        stretched: &[u8; 32],
        factors: &Factors<'_>,
        db_key: &[u8; 32],
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        kdf.check()?;
        let mut file = Self::blank(vault_id, kdf, salt, factors.card);
        let kek = kek_of(stretched, factors.device_secret, secret_in(factors.card, 0));
        let no_duress = Zeroizing::new(rng.random::<[u8; 32]>());
        file.seal_slots(&kek, db_key, &no_duress, SlotB::Empty, rng)?;
        file.seal_card_keys(
            &card_key::kek(stretched, factors.device_secret),
            &card_key::kek(&no_duress, factors.device_secret),
            factors.card.map(|c| &*c.key),
            rng,
        )?;
        Ok(file)
    }

    /// The Argon2id salt (a duress unlock makes the decoy's key file with the same one).
    pub(crate) fn salt(&self) -> [u8; 16] {
        self.salt
    }

    /// After an unlock with the card: the same wrap with the card read's counter recorded, so
    /// a later read must be above it, everything sealed again with fresh nonces (a file from
    /// an older version becomes the current one). Needs what that unlock opened.
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
        next.reseal(unlocked, rng)?;
        Ok(next)
    }

    /// A file from an older version rewritten as the current one (the same keys; a version 1
    /// file gets an empty duress slot); `None` if it already is current.
    pub fn upgraded<R: Rng + CryptoRng>(
        &self,
        unlocked: &Unwrapped,
        rng: &mut R,
    ) -> Result<Option<Self>, VaultError> {
        if self.version == VERSION {
            return Ok(None);
        }
        let mut next = self.clone();
        next.reseal(unlocked, rng)?;
        Ok(Some(next))
    }

    /// The same database key wrapped to new factors: a new password, Argon2id cost or card.
    /// The duress password carries over while the cost stays the same (the salt is kept, so
    /// its Argon2id output in slot A still holds); with a new cost the salt is new and the
    /// duress password is dropped. A new password equal to the duress password is refused.
    pub fn rewrapped<R: Rng + CryptoRng>(
        &self,
        unlocked: &Unwrapped,
        device_secret: &[u8; 32],
        new_password: &[u8],
        new_kdf: KdfParams,
        new_card: Option<&CardFactor>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let same_cost = new_kdf == self.kdf;
        let salt = if same_cost { self.salt } else { rng.random() };
        let stretched = stretch(&new_kdf, &salt, new_password)?;
        let mut next = Self::blank(self.vault_id, new_kdf, salt, new_card);
        // The same card stays on the slot that opened the file (the other one holds the secret
        // from before the last rotation, which a copy of the card may still have); another
        // card starts on slot 0.
        let same_card = matches!((&self.card, new_card), (Some(b), Some(c)) if b.uid == c.uid);
        let slot = if same_card {
            unlocked.card_slot.unwrap_or(0)
        } else {
            0
        };
        let secret = secret_in(new_card, slot);
        let kek = kek_of(&stretched, device_secret, secret);
        if same_cost {
            if unlocked.duress_record.is_some()
                && bool::from(
                    kek_of(&unlocked.duress_stretched, device_secret, secret)[..].ct_eq(&kek[..]),
                )
            {
                return Err(VaultError::DuressSameAsPassword);
            }
            next.seal_keeping_duress(&kek, unlocked, device_secret, secret, rng)?;
            next.seal_card_keys(
                &card_key::kek(&stretched, device_secret),
                &unlocked.kek_d,
                new_card.map(|c| &*c.key),
                rng,
            )?;
        } else {
            let none = Zeroizing::new(rng.random::<[u8; 32]>());
            next.seal_slots(&kek, &unlocked.db_key, &none, SlotB::Empty, rng)?;
            next.seal_card_keys(
                &card_key::kek(&stretched, device_secret),
                &card_key::kek(&none, device_secret),
                new_card.map(|c| &*c.key),
                rng,
            )?;
        }
        Ok(next)
    }

    /// Sets (`Some((duress password, decoy record))`) or clears the duress password. `card` is
    /// the fresh read the unlock of `unlocked` was checked with; its counter is recorded.
    pub fn with_duress<R: Rng + CryptoRng>(
        &self,
        unlocked: &Unwrapped,
        device_secret: &[u8; 32],
        card: Option<&CardFactor>,
        duress: Option<(&[u8], &[u8])>,
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let mut next = Self::blank(self.vault_id, self.kdf, self.salt, card);
        let card_key = card.map(|c| &*c.key).or(unlocked.card_key());
        match duress {
            Some((password, record)) => {
                pad_record(record)?;
                let stretched = stretch(&self.kdf, &self.salt, password)?;
                let slot = unlocked.card_slot.unwrap_or(0);
                let kek_b = kek_of(&stretched, device_secret, secret_in(card, slot));
                if bool::from(kek_b[..].ct_eq(&unlocked.kek[..])) {
                    return Err(VaultError::DuressSameAsPassword);
                }
                next.seal_slots(
                    &unlocked.kek,
                    &unlocked.db_key,
                    &stretched,
                    SlotB::Record(&kek_b, record),
                    rng,
                )?;
                let kek_d = card_key::kek(&stretched, device_secret);
                next.seal_card_keys(&unlocked.kek_c, &kek_d, card_key, rng)?;
            }
            None => {
                let none = Zeroizing::new(rng.random::<[u8; 32]>());
                next.seal_slots(&unlocked.kek, &unlocked.db_key, &none, SlotB::Empty, rng)?;
                let kek_d = card_key::kek(&none, device_secret);
                next.seal_card_keys(&unlocked.kek_c, &kek_d, card_key, rng)?;
            }
        }
        Ok(next)
    }

    /// Opens the key file with `factors`: slot A (the account) or slot B (the duress
    /// password), else [`VaultError::WrongFactor`] if any factor is wrong. Both slots are always
    /// tried, so the two outcomes cost the same. With the card factor, a card with another UID
    /// is [`VaultError::WrongCard`] and a SUN counter not above the recorded one is
    /// [`VaultError::CardReplayed`] — both before any key derivation.
    pub fn unwrap_key(&self, factors: &Factors<'_>) -> Result<Unwrap, VaultError> {
        self.check_card(factors)?;
        let stretched = self.stretch(factors.password)?;
        self.unwrap_stretched(&stretched, factors)
    }

    /// The checks [`KeyFile::unwrap_key`] makes of the card read before any key derivation.
    pub(crate) fn check_card(&self, factors: &Factors<'_>) -> Result<(), VaultError> {
        self.check_card_read(factors.card)
    }

    /// [`KeyFile::check_card`] of a card read alone.
    pub(crate) fn check_card_read(&self, card: Option<&CardFactor>) -> Result<(), VaultError> {
        match (&self.card, card) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(VaultError::CardRequired),
            (Some(bound), Some(read)) => {
                if read.uid != bound.uid {
                    return Err(VaultError::WrongCard);
                }
                if read.counter <= bound.counter {
                    return Err(VaultError::CardReplayed);
                }
                Ok(())
            }
        }
    }

    /// Argon2id of `password` under this file's salt and cost.
    pub(crate) fn stretch(&self, password: &[u8]) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        stretch(&self.kdf, &self.salt, password)
    }

    /// [`KeyFile::unwrap_key`] with the password already stretched under this file's salt
    /// (the card checks made by the caller). Every slot of the card's secret file is tried
    /// against both slots of the file, so the outcomes cost the same.
    pub(crate) fn unwrap_stretched(
        &self,
        stretched: &Zeroizing<[u8; 32]>,
        factors: &Factors<'_>,
    ) -> Result<Unwrap, VaultError> {
        let card = match self.card {
            Some(_) => factors.card,
            None => None,
        };
        let slots: &[Option<usize>] = if card.is_some() {
            &[Some(0), Some(1)]
        } else {
            &[None]
        };
        let mut a = None;
        let mut b = None;
        for &slot in slots {
            let secret = slot.and_then(|i| secret_in(card, i));
            let kek = kek_of(stretched, factors.device_secret, secret);
            if let Some(plain) = open(&kek, &self.nonce_a, &self.slot_a, &self.aad_a()) {
                a = Some((plain, kek.clone(), slot));
            }
            if self.version != VERSION_1
                && let Some(plain) = open(&kek, &self.nonce_b, &self.slot_b, &self.aad_b())
            {
                b = Some((plain, slot));
            }
        }
        match (a, b) {
            (Some((plain, kek, card_slot)), _) => {
                let expected = if self.version == VERSION_1 {
                    32
                } else {
                    SLOT_A_PLAIN
                };
                if plain.len() != expected {
                    return Err(VaultError::KeyFileDamaged);
                }
                let mut db_key = Zeroizing::new([0u8; 32]);
                db_key.copy_from_slice(&plain[..32]);
                let mut duress_stretched = Zeroizing::new([0u8; 32]);
                let mut duress_record = None;
                let secret = card_slot.and_then(|i| secret_in(card, i));
                if self.version == VERSION_1 {
                    rand::rng().fill_bytes(duress_stretched.as_mut());
                } else {
                    duress_stretched.copy_from_slice(&plain[32..]);
                }
                let kek_b = kek_of(&duress_stretched, factors.device_secret, secret);
                if self.version != VERSION_1 {
                    duress_record = open(&kek_b, &self.nonce_b, &self.slot_b, &self.aad_b())
                        .and_then(|p| unpad_record(&p));
                }
                Ok(Unwrap::Account(Box::new(Unwrapped {
                    db_key,
                    kek,
                    stretched: stretched.clone(),
                    card_slot,
                    kek_b,
                    kek_c: card_key::kek(stretched, factors.device_secret),
                    kek_d: card_key::kek(&duress_stretched, factors.device_secret),
                    card_key: card.map(|c| c.key.clone()),
                    duress_stretched,
                    duress_record,
                })))
            }
            (None, Some((plain, card_slot))) => Ok(Unwrap::Duress {
                record: unpad_record(&plain).ok_or(VaultError::KeyFileDamaged)?,
                stretched: stretched.clone(),
                card_slot,
            }),
            (None, None) => Err(VaultError::WrongFactor),
        }
    }

    /// The file a card secret rotation writes (`docs/vault.md` §Card secret rotation): the
    /// same database key, password (same salt and cost) and duress password, wrapped to
    /// `secret` instead of the card secret that opened it, with the card's counter as
    /// recorded in this file. Fresh nonces.
    pub fn for_card_secret<R: Rng + CryptoRng>(
        &self,
        unlocked: &Unwrapped,
        device_secret: &[u8; 32],
        secret: &[u8; 32],
        rng: &mut R,
    ) -> Result<Self, VaultError> {
        let Some(binding) = self.card else {
            return Err(VaultError::NoCardEnrolled);
        };
        let mut next = Self::blank_bound(self.vault_id, self.kdf, self.salt, Some(binding));
        let kek = kek_of(&unlocked.stretched, device_secret, Some(secret));
        next.seal_keeping_duress(&kek, unlocked, device_secret, Some(secret), rng)?;
        next.seal_card_keys(&unlocked.kek_c, &unlocked.kek_d, unlocked.card_key(), rng)?;
        Ok(next)
    }

    /// The encoding in `docs/vault.md` (the version it was read as; every file sealed here is
    /// the current version).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        out.extend_from_slice(&self.nonce_a);
        out.extend_from_slice(&self.slot_a);
        if self.version != VERSION_1 {
            out.extend_from_slice(&self.nonce_b);
            out.extend_from_slice(&self.slot_b);
        }
        if let Some(keys) = &self.card_keys {
            out.extend(keys.to_bytes());
        }
        out.extend(self.card_section());
        out
    }

    /// The card's master key (`docs/card-key.md`), opened with the password's Argon2id output
    /// under this file's salt: from slot C (the account's password) or slot D (the duress
    /// password), both always tried. `Ok(None)` when the file has no card factor or is from
    /// before the key moved into it (version 2: the key is in the OS keyring);
    /// [`VaultError::WrongFactor`] when neither slot opens (a wrong password or device
    /// secret), before the card is touched.
    pub fn open_card_key(
        &self,
        stretched: &[u8; 32],
        device_secret: &[u8; 32],
    ) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        let (Some(card), Some(keys)) = (&self.card, &self.card_keys) else {
            return Ok(None);
        };
        let kek = card_key::kek(stretched, device_secret);
        keys.open(&self.header(), &card.uid, &kek)
            .map(|(key, _)| Some(key))
            .ok_or(VaultError::WrongFactor)
    }

    /// Parses a key file (version 1, 2 or 3).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() < KEY_FILE_V1_LEN || &bytes[..4] != MAGIC {
            return Err(VaultError::KeyFileDamaged);
        }
        let version = bytes[4];
        let body_len = match version {
            VERSION_1 => KEY_FILE_V1_LEN,
            VERSION_2 | VERSION => KEY_FILE_LEN,
            _ => return Err(VaultError::NewerVersion),
        };
        let flags = bytes[21];
        if flags & (FACTOR_PASSWORD | FACTOR_DEVICE) != (FACTOR_PASSWORD | FACTOR_DEVICE)
            || flags & !(FACTOR_PASSWORD | FACTOR_DEVICE | FACTOR_CARD) != 0
        {
            return Err(VaultError::KeyFileDamaged);
        }
        let with_card = flags & FACTOR_CARD != 0;
        let with_keys = with_card && version == VERSION;
        let keys_len = if with_keys { card_key::SECTION_LEN } else { 0 };
        let expected = body_len + keys_len + if with_card { CARD_SECTION_LEN } else { 0 };
        if bytes.len() != expected {
            return Err(VaultError::KeyFileDamaged);
        }
        let card_at = body_len + keys_len;
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let card = with_card.then(|| {
            let mut uid = [0u8; 7];
            uid.copy_from_slice(&bytes[card_at..card_at + 7]);
            CardBinding {
                uid,
                counter: u32_at(card_at + 7),
            }
        });
        let slot_a_len = if version == VERSION_1 { 48 } else { SLOT_A_LEN };
        let mut file = Self {
            vault_id: [0; 16],
            card,
            kdf: KdfParams {
                memory_kib: u32_at(22),
                passes: u32_at(26),
                lanes: u32_at(30),
            },
            version,
            salt: [0; 16],
            nonce_a: [0; NONCE_LEN],
            slot_a: Vec::new(),
            nonce_b: [0; NONCE_LEN],
            slot_b: Vec::new(),
            card_keys: None,
        };
        file.vault_id.copy_from_slice(&bytes[5..21]);
        file.salt.copy_from_slice(&bytes[34..50]);
        let mut at = HEADER_LEN;
        file.nonce_a.copy_from_slice(&bytes[at..at + NONCE_LEN]);
        at += NONCE_LEN;
        file.slot_a = bytes[at..at + slot_a_len].to_vec();
        at += slot_a_len;
        if version != VERSION_1 {
            file.nonce_b.copy_from_slice(&bytes[at..at + NONCE_LEN]);
            at += NONCE_LEN;
            file.slot_b = bytes[at..at + SLOT_B_LEN].to_vec();
            at += SLOT_B_LEN;
        }
        if with_keys {
            file.card_keys = Some(CardKeySection::from_bytes(
                &bytes[at..at + card_key::SECTION_LEN],
            )?);
        }
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
        CardFactor::with_secret([uid; 7], counter, [secret; 32])
    }

    /// The account's slot, or a failed test.
    fn account(u: Result<Unwrap, VaultError>) -> Unwrapped {
        match u {
            Ok(Unwrap::Account(u)) => *u,
            Ok(Unwrap::Duress { .. }) => panic!("opened the duress slot"),
            Err(e) => panic!("unwrap failed: {e}"),
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
            *account(back.unwrap_key(&factors(b"pw", &dev, None))).db_key,
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
        let opened = account(with_card.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 11, 9)))));
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
            *account(next.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 12, 9))))).db_key,
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
        other_uid[KEY_FILE_LEN + card_key::SECTION_LEN] ^= 1;
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
        bad.extend([3; card_key::SECTION_LEN + CARD_SECTION_LEN]);
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
        let mut v4 = bytes.clone();
        v4[4] = VERSION + 1;
        assert!(matches!(
            KeyFile::from_bytes(&v4),
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

    #[test]
    fn the_duress_slot_opens_with_its_own_password_and_looks_the_same_when_empty() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let dev = [7u8; 32];
        let key = [42u8; 32];
        let plain = KeyFile::wrap(
            [1; 16],
            KdfParams::MINIMUM,
            &key,
            &factors(b"pw", &dev, Some(&card(4, 10, 9))),
            &mut rng,
        )
        .expect("wrap");
        let tap = card(4, 11, 9);
        let opened = account(plain.unwrap_key(&factors(b"pw", &dev, Some(&tap))));
        assert!(!opened.duress_configured());
        let set = plain
            .with_duress(
                &opened,
                &dev,
                Some(&tap),
                Some((b"duress", b"decoy record")),
                &mut rng,
            )
            .expect("set duress");
        // Same size and layout with and without a duress password.
        assert_eq!(set.to_bytes().len(), plain.to_bytes().len());
        assert_eq!(set.to_bytes().len(), KEY_FILE_CARD_LEN);
        let set = KeyFile::from_bytes(&set.to_bytes()).expect("parse");
        assert_eq!(set.card.map(|c| c.counter), Some(11));

        match set.unwrap_key(&factors(b"duress", &dev, Some(&card(4, 12, 9)))) {
            Ok(Unwrap::Duress {
                record, stretched, ..
            }) => {
                assert_eq!(&record[..], b"decoy record");
                let expected = stretch(&set.kdf, &set.salt, b"duress").expect("stretch");
                assert_eq!(*stretched, *expected);
            }
            Ok(Unwrap::Account(_)) => panic!("the duress password opened the account"),
            Err(e) => panic!("the duress password failed: {e}"),
        }
        // Like the account's password, it needs the device secret and the card.
        for (d, c) in [([8u8; 32], card(4, 12, 9)), (dev, card(4, 12, 8))] {
            assert!(matches!(
                set.unwrap_key(&factors(b"duress", &d, Some(&c))),
                Err(VaultError::WrongFactor)
            ));
        }
        assert!(matches!(
            set.unwrap_key(&factors(b"duress", &dev, Some(&card(4, 11, 9)))),
            Err(VaultError::CardReplayed)
        ));
        // The account's password still opens the account, which knows a duress password is set.
        let again = account(set.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 12, 9)))));
        assert_eq!(*again.db_key, key);
        assert!(again.duress_configured());
        // Recording a counter seals every slot again (fresh nonces); the duress slot still
        // opens after it.
        let counted = set.with_counter(&again, 12, &mut rng).expect("counter");
        assert_ne!(counted.slot_b, set.slot_b);
        assert_ne!(counted.slot_a, set.slot_a);
        assert!(matches!(
            counted.unwrap_key(&factors(b"duress", &dev, Some(&card(4, 13, 9)))),
            Ok(Unwrap::Duress { .. })
        ));
        // Clearing it: the duress password is then just a wrong password.
        let tap = card(4, 13, 9);
        let opened = account(counted.unwrap_key(&factors(b"pw", &dev, Some(&tap))));
        let cleared = counted
            .with_duress(&opened, &dev, Some(&tap), None, &mut rng)
            .expect("clear");
        assert_eq!(cleared.to_bytes().len(), set.to_bytes().len());
        assert!(matches!(
            cleared.unwrap_key(&factors(b"duress", &dev, Some(&card(4, 14, 9)))),
            Err(VaultError::WrongFactor)
        ));
        assert!(
            !account(cleared.unwrap_key(&factors(b"pw", &dev, Some(&card(4, 14, 9)))))
                .duress_configured()
        );
        // Refusals: the account's own password, a record too long for the slot.
        let tap = card(4, 11, 9);
        let opened = account(plain.unwrap_key(&factors(b"pw", &dev, Some(&tap))));
        assert!(matches!(
            plain.with_duress(&opened, &dev, Some(&tap), Some((b"pw", b"x")), &mut rng),
            Err(VaultError::DuressSameAsPassword)
        ));
        let long = vec![b'x'; DURESS_RECORD_MAX + 1];
        assert!(matches!(
            plain.with_duress(&opened, &dev, Some(&tap), Some((b"d", &long)), &mut rng),
            Err(VaultError::DuressRecordTooLarge { .. })
        ));
        let full = plain
            .with_duress(
                &opened,
                &dev,
                Some(&tap),
                Some((b"d", &long[..DURESS_RECORD_MAX])),
                &mut rng,
            )
            .expect("a record of the slot's capacity");
        match full.unwrap_key(&factors(b"d", &dev, Some(&card(4, 12, 9)))) {
            Ok(Unwrap::Duress { record, .. }) => assert_eq!(record.len(), DURESS_RECORD_MAX),
            _ => panic!("the full record did not open"),
        }
    }

    #[test]
    fn a_tampered_duress_slot_opens_nothing_and_leaves_the_account() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let dev = [7u8; 32];
        let f = KeyFile::wrap(
            [1; 16],
            KdfParams::MINIMUM,
            &[1; 32],
            &factors(b"pw", &dev, None),
            &mut rng,
        )
        .expect("wrap");
        let opened = account(f.unwrap_key(&factors(b"pw", &dev, None)));
        let f = f
            .with_duress(&opened, &dev, None, Some((b"duress", b"r")), &mut rng)
            .expect("set");
        let slot_b_at = HEADER_LEN + NONCE_LEN + SLOT_A_LEN + NONCE_LEN;
        let mut bytes = f.to_bytes();
        bytes[slot_b_at + 5] ^= 1;
        let bad = KeyFile::from_bytes(&bytes).expect("parse");
        assert!(matches!(
            bad.unwrap_key(&factors(b"duress", &dev, None)),
            Err(VaultError::WrongFactor)
        ));
        let opened = account(bad.unwrap_key(&factors(b"pw", &dev, None)));
        assert!(!opened.duress_configured());
    }

    #[test]
    fn a_rewrap_keeps_the_duress_password_unless_the_cost_changes() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let dev = [7u8; 32];
        let key = [9u8; 32];
        let f = KeyFile::wrap(
            [1; 16],
            KdfParams::MINIMUM,
            &key,
            &factors(b"pw", &dev, None),
            &mut rng,
        )
        .expect("wrap");
        let opened = account(f.unwrap_key(&factors(b"pw", &dev, None)));
        let f = f
            .with_duress(&opened, &dev, None, Some((b"duress", b"r")), &mut rng)
            .expect("set");
        let opened = account(f.unwrap_key(&factors(b"pw", &dev, None)));
        // A new password: the duress password still works, the old password does not.
        let changed = f
            .rewrapped(&opened, &dev, b"new", KdfParams::MINIMUM, None, &mut rng)
            .expect("rewrap");
        assert!(matches!(
            changed.unwrap_key(&factors(b"pw", &dev, None)),
            Err(VaultError::WrongFactor)
        ));
        assert!(matches!(
            changed.unwrap_key(&factors(b"duress", &dev, None)),
            Ok(Unwrap::Duress { .. })
        ));
        let opened = account(changed.unwrap_key(&factors(b"new", &dev, None)));
        assert!(opened.duress_configured());
        assert_eq!(*opened.db_key, key);
        // The new password may not be the duress password.
        assert!(matches!(
            changed.rewrapped(&opened, &dev, b"duress", KdfParams::MINIMUM, None, &mut rng),
            Err(VaultError::DuressSameAsPassword)
        ));
        // Enrolling a card carries it over (now needing the card).
        let enrolled = changed
            .rewrapped(
                &opened,
                &dev,
                b"new",
                KdfParams::MINIMUM,
                Some(&card(3, 1, 6)),
                &mut rng,
            )
            .expect("enroll");
        assert!(matches!(
            enrolled.unwrap_key(&factors(b"duress", &dev, Some(&card(3, 2, 6)))),
            Ok(Unwrap::Duress { .. })
        ));
        // Another cost means another salt: the duress password is dropped.
        let costlier = KdfParams {
            passes: 3,
            ..KdfParams::MINIMUM
        };
        let recosted = changed
            .rewrapped(&opened, &dev, b"new", costlier, None, &mut rng)
            .expect("rewrap");
        assert!(matches!(
            recosted.unwrap_key(&factors(b"duress", &dev, None)),
            Err(VaultError::WrongFactor)
        ));
        let opened = account(recosted.unwrap_key(&factors(b"new", &dev, None)));
        assert!(!opened.duress_configured());
        assert_eq!(*opened.db_key, key);
    }

    #[test]
    fn a_version_1_file_opens_and_is_rewritten_as_the_current_version() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let dev = [7u8; 32];
        let key = [5u8; 32];
        let tap = card(2, 7, 1);
        // A version 1 file as the previous release wrote it: one slot, the key alone.
        let mut v1 = KeyFile::blank([3; 16], KdfParams::MINIMUM, [4; 16], Some(&tap));
        v1.version = VERSION_1;
        let stretched = stretch(&v1.kdf, &v1.salt, b"pw").expect("stretch");
        let kek = kek_of(&stretched, &dev, Some(tap.secret(0)));
        (v1.nonce_a, v1.slot_a) = seal(&kek, &key, &v1.aad_a(), &mut rng).expect("seal");
        let bytes = v1.to_bytes();
        assert_eq!(bytes.len(), KEY_FILE_V1_LEN + CARD_SECTION_LEN);
        let v1 = KeyFile::from_bytes(&bytes).expect("parse v1");
        let opened = account(v1.unwrap_key(&factors(b"pw", &dev, Some(&card(2, 8, 1)))));
        assert_eq!(*opened.db_key, key);
        assert!(!opened.duress_configured());
        let v2 = v1.with_counter(&opened, 8, &mut rng).expect("counter");
        let v2 = KeyFile::from_bytes(&v2.to_bytes()).expect("parse v2");
        assert_eq!(v2.version, VERSION);
        assert_eq!(v2.to_bytes().len(), KEY_FILE_CARD_LEN);
        assert_eq!(
            *account(v2.unwrap_key(&factors(b"pw", &dev, Some(&card(2, 9, 1))))).db_key,
            key
        );
        // Without the card factor, `upgraded` does the same; a version 2 file needs nothing.
        let mut plain = KeyFile::blank([3; 16], KdfParams::MINIMUM, [4; 16], None);
        plain.version = VERSION_1;
        let kek = kek_of(&stretched, &dev, None);
        (plain.nonce_a, plain.slot_a) = seal(&kek, &key, &plain.aad_a(), &mut rng).expect("seal");
        let opened = account(plain.unwrap_key(&factors(b"pw", &dev, None)));
        let up = plain
            .upgraded(&opened, &mut rng)
            .expect("upgrade")
            .expect("a version 1 file is rewritten");
        assert_eq!(up.to_bytes().len(), KEY_FILE_LEN);
        let opened = account(up.unwrap_key(&factors(b"pw", &dev, None)));
        assert!(up.upgraded(&opened, &mut rng).expect("upgrade").is_none());
    }

    /// A card read like [`card`], made with master key `key`.
    fn card_keyed(uid: u8, counter: u32, secret: u8, key: u8) -> CardFactor {
        let mut c = card(uid, counter, secret);
        c.key = Zeroizing::new([key; 32]);
        c
    }

    /// The card's key as slot C or D gives it back to `password`.
    fn card_key_for(f: &KeyFile, password: &[u8], dev: &[u8; 32]) -> Result<[u8; 32], VaultError> {
        let stretched = f.stretch(password)?;
        let key = f.open_card_key(&stretched, dev)?;
        Ok(*key.expect("the file holds the card's key"))
    }

    #[test]
    fn the_card_key_opens_with_either_password_only_and_follows_every_rewrite() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (dev, other_dev) = ([7u8; 32], [8u8; 32]);
        let tap = card_keyed(3, 1, 5, 0x11);
        let f = KeyFile::wrap(
            [2; 16],
            KdfParams::MINIMUM,
            &[1; 32],
            &factors(b"pw", &dev, Some(&tap)),
            &mut rng,
        )
        .expect("wrap");
        let f = KeyFile::from_bytes(&f.to_bytes()).expect("parse");
        assert_eq!(f.to_bytes().len(), KEY_FILE_CARD_LEN);
        assert_eq!(card_key_for(&f, b"pw", &dev).expect("key"), [0x11; 32]);
        // A wrong password or device secret opens neither slot: no key to read the card with.
        for (pw, d) in [(&b"pW"[..], &dev), (&b"pw"[..], &other_dev)] {
            assert!(matches!(
                f.open_card_key(&f.stretch(pw).expect("stretch"), d),
                Err(VaultError::WrongFactor)
            ));
        }
        // No plaintext copy of the key anywhere in the file.
        let bytes = f.to_bytes();
        assert!(!bytes.windows(8).any(|w| w == [0x11; 8]));
        // The duress password opens it too (slot D), and the account's still does.
        let opened = account(f.unwrap_key(&factors(b"pw", &dev, Some(&card_keyed(3, 2, 5, 0x11)))));
        assert_eq!(opened.card_key(), Some(&[0x11; 32]));
        let tap = card_keyed(3, 2, 5, 0x11);
        let set = f
            .with_duress(
                &opened,
                &dev,
                Some(&tap),
                Some((b"duress", b"decoy")),
                &mut rng,
            )
            .expect("duress");
        assert_eq!(set.to_bytes().len(), KEY_FILE_CARD_LEN);
        assert_eq!(
            card_key_for(&set, b"duress", &dev).expect("key"),
            [0x11; 32]
        );
        assert_eq!(card_key_for(&set, b"pw", &dev).expect("key"), [0x11; 32]);
        // A new counter, a new card secret: the same key for both passwords.
        let opened =
            account(set.unwrap_key(&factors(b"pw", &dev, Some(&card_keyed(3, 3, 5, 0x11)))));
        let counted = set.with_counter(&opened, 3, &mut rng).expect("counter");
        assert_eq!(
            card_key_for(&counted, b"duress", &dev).expect("key"),
            [0x11; 32]
        );
        let rotated = counted
            .for_card_secret(&opened, &dev, &[6; 32], &mut rng)
            .expect("rotate");
        assert_eq!(
            card_key_for(&rotated, b"pw", &dev).expect("key"),
            [0x11; 32]
        );
        assert_eq!(
            card_key_for(&rotated, b"duress", &dev).expect("key"),
            [0x11; 32]
        );
        // A new password: only it (and the duress password) opens the key.
        let changed = counted
            .rewrapped(
                &opened,
                &dev,
                b"new",
                KdfParams::MINIMUM,
                Some(&tap),
                &mut rng,
            )
            .expect("rewrap");
        assert!(matches!(
            changed.open_card_key(&changed.stretch(b"pw").expect("stretch"), &dev),
            Err(VaultError::WrongFactor)
        ));
        assert_eq!(
            card_key_for(&changed, b"new", &dev).expect("key"),
            [0x11; 32]
        );
        assert_eq!(
            card_key_for(&changed, b"duress", &dev).expect("key"),
            [0x11; 32]
        );
        // Another card: its key.
        let other = card_keyed(9, 1, 2, 0x22);
        let moved = counted
            .rewrapped(
                &opened,
                &dev,
                b"pw",
                KdfParams::MINIMUM,
                Some(&other),
                &mut rng,
            )
            .expect("rewrap");
        assert_eq!(card_key_for(&moved, b"pw", &dev).expect("key"), [0x22; 32]);
        // Without the card factor there is no key to open.
        let none = counted
            .rewrapped(&opened, &dev, b"pw", KdfParams::MINIMUM, None, &mut rng)
            .expect("rewrap");
        assert_eq!(none.to_bytes().len(), KEY_FILE_LEN);
        let stretched = none.stretch(b"pw").expect("stretch");
        assert!(
            none.open_card_key(&stretched, &dev)
                .expect("no card")
                .is_none()
        );
    }

    #[test]
    fn a_version_2_file_opens_with_the_keyring_key_and_is_rewritten_holding_it() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let dev = [7u8; 32];
        let db_key = [5u8; 32];
        let tap = card_keyed(2, 7, 1, 0x33);
        // A version 2 file as the previous release wrote it, with a duress password.
        let mut v2 = KeyFile::blank([3; 16], KdfParams::MINIMUM, [4; 16], Some(&tap));
        v2.version = VERSION_2;
        let stretched = stretch(&v2.kdf, &v2.salt, b"pw").expect("stretch");
        let duress = stretch(&v2.kdf, &v2.salt, b"duress").expect("stretch");
        let kek = kek_of(&stretched, &dev, Some(tap.secret(0)));
        let mut plain = Zeroizing::new([0u8; SLOT_A_PLAIN]);
        plain[..32].copy_from_slice(&db_key);
        plain[32..].copy_from_slice(&duress[..]);
        (v2.nonce_a, v2.slot_a) = seal(&kek, &plain[..], &v2.aad_a(), &mut rng).expect("seal");
        let kek_b = kek_of(&duress, &dev, Some(tap.secret(0)));
        let record = pad_record(b"decoy").expect("record");
        (v2.nonce_b, v2.slot_b) = seal(&kek_b, &record, &v2.aad_b(), &mut rng).expect("seal");
        let bytes = v2.to_bytes();
        assert_eq!(bytes.len(), KEY_FILE_LEN + CARD_SECTION_LEN);
        let v2 = KeyFile::from_bytes(&bytes).expect("parse v2");
        // No key in the file yet: the caller reads the card with the keyring's.
        assert!(v2.open_card_key(&stretched, &dev).expect("v2").is_none());
        let opened =
            account(v2.unwrap_key(&factors(b"pw", &dev, Some(&card_keyed(2, 8, 1, 0x33)))));
        assert!(opened.duress_configured());
        let v3 = v2.with_counter(&opened, 8, &mut rng).expect("counter");
        let v3 = KeyFile::from_bytes(&v3.to_bytes()).expect("parse v3");
        assert_eq!(v3.version, VERSION);
        assert_eq!(v3.to_bytes().len(), KEY_FILE_CARD_LEN);
        assert_eq!(card_key_for(&v3, b"pw", &dev).expect("key"), [0x33; 32]);
        assert_eq!(card_key_for(&v3, b"duress", &dev).expect("key"), [0x33; 32]);
        // The account and the duress password both still open.
        let again = account(v3.unwrap_key(&factors(b"pw", &dev, Some(&card(2, 9, 1)))));
        assert_eq!(*again.db_key, db_key);
        assert!(again.duress_configured());
        assert!(matches!(
            v3.unwrap_key(&factors(b"duress", &dev, Some(&card(2, 9, 1)))),
            Ok(Unwrap::Duress { .. })
        ));
    }
}
