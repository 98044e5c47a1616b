//! The card factor (DESIGN §7–8, `docs/ntag424.md` §Tessera's card): provisioning a card,
//! reading it for an unlock, its status, and watching for its removal. Blocking PC/SC calls:
//! run them off the async runtime's threads.

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tessera_nfc::reader::{ReaderError, Readers};
use tessera_nfc::tag::{self, CardMasterKey, TagError};
use tessera_store::{
    CardFactor, CardRotation, Opening, SecretStore, Vault, VaultError, card_entry,
};
use zeroize::Zeroizing;

use crate::CoreError;

fn rng() -> StdRng {
    StdRng::from_os_rng()
}

/// Why a card operation failed (typed; no key material).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// PC/SC, the card's protocol, or Tessera's use of the card.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// The card is provisioned, but its master key is neither in the vault's key file nor in
    /// this machine's keyring.
    #[error(
        "this card's key is not on this machine (provisioned elsewhere, enrolled in a vault, or removed)"
    )]
    KeysMissing,
    /// A factory-fresh card: it has to be provisioned before it can be used.
    #[error("this card is factory-fresh: provision it first (tessera-cli card provision)")]
    NotProvisioned,
    /// The keyring could not be used.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<ReaderError> for CardError {
    fn from(e: ReaderError) -> Self {
        Self::Tag(TagError::Reader(e))
    }
}

/// A card found on a reader.
struct Found {
    reader: String,
    connection: tessera_nfc::reader::CardConnection,
}

/// The reader to use: `wanted` if given, else the first reader with a card on it. While
/// another connection holds the card (a status poll, another program) it is tried again for up
/// to five seconds.
fn connect(readers: &Readers, wanted: Option<&str>) -> Result<Found, CardError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match connect_once(readers, wanted) {
            Err(CardError::Tag(TagError::Reader(ReaderError::Busy)))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn connect_once(readers: &Readers, wanted: Option<&str>) -> Result<Found, CardError> {
    let names = readers.list()?;
    let reader = match wanted {
        Some(w) => names
            .into_iter()
            .find(|n| n == w)
            .ok_or(ReaderError::NoReader)?,
        None => {
            let mut with_card = None;
            for n in &names {
                if readers.card_present(n)? {
                    with_card = Some(n.clone());
                    break;
                }
            }
            with_card.ok_or(ReaderError::NoCard)?
        }
    };
    let connection = readers.connect(&reader)?;
    Ok(Found { reader, connection })
}

/// Reads the card on `reader` (or the first reader with a card) the way a phone does: the
/// NFC Forum Type 4 Tag NDEF procedure, no key needed. On a Tessera card every such read
/// advances the card's SUN counter once. Returns the reader used and what was read.
pub fn read_ndef(reader: Option<&str>) -> Result<(String, tessera_nfc::ndef::NdefRead), CardError> {
    let readers = Readers::open()?;
    let mut found = connect(&readers, reader)?;
    let read = tessera_nfc::ndef::read(&mut found.connection)?;
    Ok((found.reader, read))
}

/// What provisioning did.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The reader used.
    pub reader: String,
    /// The card's UID.
    pub uid: [u8; 7],
    /// Whether the card had been provisioned before (re-provisioned with its current key).
    pub reprovisioned: bool,
}

/// How to treat a card that is not factory-fresh.
#[derive(Debug)]
pub enum Reprovision {
    /// Refuse it.
    No,
    /// Re-provision it with the master key this machine's keyring holds for it (a card
    /// provisioned here and not enrolled in a vault: an enrolled card's key is sealed in its
    /// vault's key file, and re-provisioning it would lock that vault).
    FromKeyring,
    /// Re-provision it with this master key.
    WithKey(CardMasterKey),
}

/// Provisions the card on `reader` (or the first reader with a card) with a fresh master key
/// and a fresh card secret. The new master key goes into `secrets` as `card-<uid>-pending`
/// before the card's keys change and becomes `card-<uid>` when the card is done, so a run cut
/// short (card taken away) is completed by running again: a pending key for the card is reused
/// and its presence allows the non-factory card.
pub fn provision(
    secrets: &dyn SecretStore,
    reader: Option<&str>,
    reprovision: Reprovision,
) -> Result<Provisioned, CardError> {
    let readers = Readers::open()?;
    let mut found = connect(&readers, reader)?;
    let mut r = rng();
    let uid = tag::reader_uid(&mut found.connection)?;
    let entry = card_entry(&uid);
    let pending_entry = format!("{entry}-pending");
    let mut known: Vec<CardMasterKey> = Vec::new();
    match reprovision {
        Reprovision::No => {}
        Reprovision::FromKeyring => known.push(CardMasterKey::from_bytes(
            &*secrets.get(&entry)?.ok_or(CardError::KeysMissing)?,
        )),
        Reprovision::WithKey(k) => known.push(k),
    }
    let reprovisioned = !known.is_empty();
    let (new, fresh_pending) = match secrets.get(&pending_entry)? {
        Some(p) => {
            // An interrupted run: its key may be on some of the card's slots already. (With
            // --reprovision the keyring's current key is in `known` too, for a re-provisioning
            // that was interrupted.)
            let p = CardMasterKey::from_bytes(&p);
            known.push(p.clone());
            (p, false)
        }
        None => {
            let k = CardMasterKey::generate(&mut r);
            secrets.put(&pending_entry, k.as_bytes())?;
            (k, true)
        }
    };
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut r, &mut secret[..]);
    let known_refs: Vec<&CardMasterKey> = known.iter().collect();
    match tag::provision(&mut found.connection, &known_refs, &new, &secret, &mut r) {
        Ok(_) => {}
        Err(e) => {
            let refused = matches!(e, TagError::NotFactoryFresh | TagError::WrongCurrentKey);
            // Refusals happen before anything is written to the card: a pending key made by
            // this run has nothing to resume and must not later count as a "known" key.
            if refused && fresh_pending {
                secrets.delete(&pending_entry)?;
            }
            return Err(match e {
                TagError::WrongCurrentKey if !reprovisioned => TagError::NotFactoryFresh,
                other => other,
            }
            .into());
        }
    }
    secrets.put(&entry, new.as_bytes())?;
    secrets.delete(&pending_entry)?;
    Ok(Provisioned {
        reader: found.reader,
        uid,
        reprovisioned,
    })
}

/// A card read for an unlock, and the reader it is on.
pub struct Tap {
    /// The reader (watched for removal while unlocked).
    pub reader: String,
    /// What the vault needs.
    pub factor: CardFactor,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("reader", &self.reader)
            .field("factor", &self.factor)
            .finish()
    }
}

/// Connects to the card on `reader` (or the first reader with a card) and reads its UID from
/// the reader (no key used yet).
fn on_reader(reader: Option<&str>) -> Result<(Found, [u8; 7]), CardError> {
    let readers = Readers::open()?;
    let mut found = connect(&readers, reader)?;
    let uid = tag::reader_uid(&mut found.connection)?;
    Ok((found, uid))
}

/// Reads the card `found` (UID `uid` from the reader) with `master`: a fresh SUN and the
/// secret file.
fn read_with(mut found: Found, uid: [u8; 7], master: &CardMasterKey) -> Result<Tap, CardError> {
    let read = tag::read(&mut found.connection, master, &mut rng())?;
    if read.uid != uid {
        return Err(TagError::WrongCard.into());
    }
    Ok(Tap {
        reader: found.reader,
        factor: CardFactor {
            uid: read.uid,
            counter: read.counter,
            slots: read.slots,
            key: Zeroizing::new(*master.as_bytes()),
        },
    })
}

/// Reads a card that is provisioned but not enrolled in a vault yet (for a new vault, a
/// restore, enrolling or replacing a card), on `reader` (or the first reader with a card): its
/// UID from the reader, its master key from `secrets` (where provisioning left it until a vault
/// takes it, `docs/card-key.md`), then a fresh SUN and the secret.
pub fn tap(secrets: &dyn SecretStore, reader: Option<&str>) -> Result<Tap, CardError> {
    let (mut found, uid) = on_reader(reader)?;
    let Some(master) = secrets.get(&card_entry(&uid))? else {
        if tag::probe(&mut found.connection, &mut rng())?.factory {
            return Err(CardError::NotProvisioned);
        }
        return Err(CardError::KeysMissing);
    };
    read_with(found, uid, &CardMasterKey::from_bytes(&master))
}

/// Reads the card to enroll in the vault in `dir` (a vault made without one) as [`tap`] does;
/// a vault that has a card already is refused before any card is touched.
pub fn tap_to_enroll(
    dir: &Path,
    secrets: &dyn SecretStore,
    reader: Option<&str>,
) -> Result<Tap, CoreError> {
    if Vault::card_binding(dir)?.is_some() {
        return Err(CoreError::Vault(VaultError::CardAlreadyEnrolled));
    }
    Ok(tap(secrets, reader)?)
}

/// The key to read the vault's card with: from the key file (opened with the password), or for
/// a vault from before the key moved into it, from the keyring.
fn vault_card_key(
    opening: &Opening,
    secrets: &dyn SecretStore,
    uid: &[u8; 7],
) -> Result<CardMasterKey, CardError> {
    if let Some(key) = opening.card_key() {
        return Ok(CardMasterKey::from_bytes(key));
    }
    let key = secrets
        .get(&card_entry(uid))?
        .ok_or(CardError::KeysMissing)?;
    Ok(CardMasterKey::from_bytes(&key))
}

/// The first half of an unlock of the vault in `dir` with the card (`docs/card-key.md`): the
/// card's UID from the reader (another card is [`VaultError::WrongCard`] before any key
/// derivation), then [`Vault::begin_unlock`] (Argon2id; a wrong password fails there, before
/// the card is authenticated with), then the card read with the key the key file gave. Finish
/// with [`Opening::finish`] and the tap's factor. Without the card factor no card is read.
/// Blocking (Argon2id, PC/SC).
pub fn open_and_tap(
    dir: &Path,
    password: &[u8],
    secrets: &dyn SecretStore,
    reader: Option<&str>,
) -> Result<(Opening, Option<Tap>), CoreError> {
    let Some(binding) = Vault::card_binding(dir)? else {
        return Ok((Vault::begin_unlock(dir, password, secrets)?, None));
    };
    let (found, uid) = on_reader(reader)?;
    if uid != binding.uid {
        return Err(CoreError::Vault(VaultError::WrongCard));
    }
    let opening = Vault::begin_unlock(dir, password, secrets)?;
    let key = vault_card_key(&opening, secrets, &uid)?;
    let tap = read_with(found, uid, &key)?;
    Ok((opening, Some(tap)))
}

/// Reads the card if the vault in `dir` has the card factor (`None` if it has not), with the
/// key the key file gives to `password` ([`open_and_tap`]): for what needs a fresh read of the
/// enrolled card besides unlocking (a password or duress change, a card replacement, leaving).
pub fn tap_for_vault(
    dir: &Path,
    password: &[u8],
    secrets: &dyn SecretStore,
    reader: Option<&str>,
) -> Result<Option<Tap>, CoreError> {
    Ok(open_and_tap(dir, password, secrets, reader)?.1)
}

/// What the card check at an unlock found (`docs/vault.md` §Card secret rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CardCheck {
    /// Whether the card now holds a new secret and the vault opens only with it.
    pub rotated: bool,
    /// Why the rotation did not happen (the card was taken away, the reader failed); the next
    /// unlock tries again. No secrets in it.
    pub rotation_error: Option<String>,
    /// SUN reads of the card since this vault's last unlock that were not this unlock's: a
    /// phone, another reader, or someone copying the card. Zero when only this device read it.
    pub reads_elsewhere: u32,
}

/// Moves the vault to a new card secret after an unlock: a new random secret, the key file for
/// it written beside the current one, the secret written into the card's other slot and read
/// back, then the key file replaced. A clone of the card made before stops opening the vault.
/// Cut short anywhere (card pulled, reader gone), the card still opens the vault with the old
/// secret, or the new one when the write finished. Blocking (PC/SC).
pub fn rotate_secret(
    secrets: &dyn SecretStore,
    reader: &str,
    rotation: CardRotation,
) -> Result<(), CardError> {
    let uid = rotation.uid().ok_or(VaultError::NoCardEnrolled)?;
    let master = match rotation.card_key() {
        Some(key) => CardMasterKey::from_bytes(key),
        None => CardMasterKey::from_bytes(
            &*secrets
                .get(&card_entry(&uid))?
                .ok_or(CardError::KeysMissing)?,
        ),
    };
    let readers = Readers::open()?;
    let mut found = connect(&readers, Some(reader))?;
    let mut r = rng();
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut r, &mut secret[..]);
    rotation.prepare(&secret, &mut r)?;
    tag::write_secret(
        &mut found.connection,
        &master,
        &uid,
        rotation.target_slot(),
        &secret,
        &mut r,
    )?;
    rotation.commit()?;
    Ok(())
}

/// The state of one reader.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReaderStatus {
    /// The reader's name.
    pub reader: String,
    /// Whether a card is on it.
    pub card: bool,
    /// The card's UID (hex), when one answered.
    pub uid: Option<String>,
    /// `factory` (default keys), `provisioned` (Tessera's key for it is here: in this keyring,
    /// or in the vault it is enrolled in), `foreign` (not factory, no key here), or `unknown`
    /// (the card did not answer); `None` when no card answered, or when a status without
    /// `probe` found no key here.
    pub provisioning: Option<&'static str>,
    /// Whether NXP's originality signature verifies (`None` if the card gave none).
    pub originality: Option<bool>,
    /// Whether this is the card the vault in the data directory is bound to.
    pub enrolled_here: Option<bool>,
}

/// Readers, cards and their provisioning state.
///
/// With `probe` off only the reader answers (UID by GET DATA, whether this keyring holds the
/// card's key, whether it is the vault's card): nothing is authenticated and the originality
/// signature is not read, so it can be polled. With `probe` on, a card whose key this keyring
/// lacks is also tried with the factory key (`factory` or `foreign`) and its originality
/// signature checked; call that once per card, not in a loop (failed authentications count on
/// a real card).
///
/// With `only`, just that reader is looked at: the cards on other readers are not touched
/// (they may be another program's, or another app instance's in the middle of its own
/// exchange, and every connection holds the card exclusively while it lasts).
pub fn status(
    secrets: &dyn SecretStore,
    dir: Option<&Path>,
    probe: bool,
    only: Option<&str>,
) -> Result<Vec<ReaderStatus>, CardError> {
    let readers = Readers::open()?;
    let binding = dir.and_then(|d| Vault::card_binding(d).ok().flatten());
    let mut out = Vec::new();
    for reader in readers.list()? {
        if only.is_some_and(|o| o != reader) {
            continue;
        }
        let card = readers.card_present(&reader)?;
        let mut st = ReaderStatus {
            reader: reader.clone(),
            card,
            uid: None,
            provisioning: None,
            originality: None,
            enrolled_here: None,
        };
        if card && let Ok(mut c) = readers.connect(&reader) {
            match tag::reader_uid(&mut c) {
                Ok(uid) => {
                    st.uid = Some(uid.iter().map(|b| format!("{b:02x}")).collect());
                    if probe {
                        st.originality = tag::originality(&mut c, &uid).ok();
                    }
                    // A card whose key this keyring holds is not probed with the factory key:
                    // every failed authentication counts on a real card (and repeated ones
                    // slow it down).
                    let enrolled = binding.is_some_and(|b| b.uid == uid);
                    let keyed = enrolled || secrets.get(&card_entry(&uid))?.is_some();
                    st.provisioning = if keyed {
                        Some("provisioned")
                    } else if probe {
                        Some(match tag::probe(&mut c, &mut rng()) {
                            Ok(p) if p.factory => "factory",
                            Ok(_) => "foreign",
                            Err(_) => "unknown",
                        })
                    } else {
                        None
                    };
                    st.enrolled_here = binding.map(|b| b.uid == uid);
                }
                Err(_) => st.provisioning = Some("unknown"),
            }
        }
        out.push(st);
    }
    Ok(out)
}

/// Waits until a card is on `reader` or `stop` returns true; returns whether one came.
pub fn wait_for_insert(reader: &str, stop: &dyn Fn() -> bool) -> Result<bool, CardError> {
    wait_until(reader, true, stop)
}

/// Waits until the card leaves `reader` or `stop` returns true; returns whether it left.
pub fn wait_for_removal(reader: &str, stop: &dyn Fn() -> bool) -> Result<bool, CardError> {
    wait_until(reader, false, stop)
}

/// Polls PC/SC with a short timeout until a card is (`present`) or is not on `reader`, or
/// `stop` returns true (seen within a quarter second); returns whether the state was reached.
/// Waiting for removal, a reader that went away (unplugged) or a stopped service counts as
/// removed.
fn wait_until(reader: &str, present: bool, stop: &dyn Fn() -> bool) -> Result<bool, CardError> {
    let readers = Readers::open()?;
    loop {
        if stop() {
            return Ok(false);
        }
        match readers.wait_for(reader, present, Duration::from_millis(250)) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(ReaderError::NoReader | ReaderError::NoService | ReaderError::CardRemoved)
                if !present =>
            {
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
