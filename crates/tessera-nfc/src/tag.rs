//! How Tessera uses an NTAG 424 DNA (DESIGN §8, `docs/ntag424.md` §Tessera's card): the key
//! layout, provisioning a card and the unlock read, over any [`Transport`].
//!
//! Everything here is deterministic given the transport and the random numbers passed in: the
//! PC/SC path and the in-process card run the same code.

use rand::RngCore;
use zeroize::{Zeroize as _, Zeroizing};

use crate::card::Card;
use crate::protocol::apdu::{self, Status};
use crate::protocol::crypto::Key;
use crate::protocol::sdm;
use crate::reader::{CardConnection, ReaderError};
use crate::{Authentication, CommMode, NfcError, Session};

/// The file holding the card secret (the proprietary file).
pub const SECRET_FILE: u8 = 3;
/// The secret file's two 32-byte slots (offsets 0 and 32): the vault's card secret is in one
/// of them; a rotation writes the new secret into the other, so a write cut short (card pulled)
/// can only damage the slot that is not in use (`docs/ntag424.md` §Secret rotation).
pub const SECRET_SLOTS: usize = 2;
/// Length of one secret slot.
pub const SECRET_LEN: usize = 32;
/// The NDEF file (SUN mirroring).
pub const NDEF_FILE: u8 = 2;
/// Key numbers: 0 application master (settings, keys), 1 SDM meta read (PICC data), 2 SDM file
/// read (SDMMAC) and secret-file read, 3 secret-file write, 4 unused (changed all the same).
pub const KEY_MASTER: u8 = 0;
/// SDM meta-read key (decrypts the PICC data).
pub const KEY_SDM_META: u8 = 1;
/// SDM file-read key (SDMMAC) and read key of the secret file.
pub const KEY_READ: u8 = 2;
/// Write key of the secret file.
pub const KEY_WRITE: u8 = 3;

/// The NDEF external-type record's type, then its payload `e=<PICC data>&c=<SDMMAC>`.
const RECORD_TYPE: &[u8] = b"tessera.app:sun";
const PICC_OFFSET: usize = 2 + 3 + RECORD_TYPE.len() + 2; // after NLEN, header, type, "e="
const MAC_OFFSET: usize = PICC_OFFSET + 32 + 3; // after the PICC data and "&c="
const NDEF_LEN: usize = MAC_OFFSET + 16;

/// Sends APDUs to a card.
pub trait Transport {
    /// One C-APDU in, its R-APDU (data and status word) out.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError>;
}

impl Transport for CardConnection {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        CardConnection::transmit(self, apdu)
    }
}

/// A card in this process (tests, benchmarks): `random` supplies the card's random numbers.
pub struct InProcess<'a, F: FnMut() -> [u8; 16]> {
    /// The card.
    pub card: &'a mut Card,
    /// The card's random numbers.
    pub random: F,
}

impl<F: FnMut() -> [u8; 16]> Transport for InProcess<'_, F> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        Ok(self.card.process(apdu, &mut self.random))
    }
}

/// Why a Tessera card operation failed. No variant carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// PC/SC: no service, no reader, no card, removed, busy.
    #[error(transparent)]
    Reader(#[from] ReaderError),
    /// The card refused or answered something malformed.
    #[error(transparent)]
    Card(#[from] NfcError),
    /// Provisioning was asked of a card whose keys are not the factory defaults.
    #[error(
        "the card is already provisioned; re-provisioning needs its current key (it is not factory-fresh)"
    )]
    NotFactoryFresh,
    /// The current key given for re-provisioning is not the card's.
    #[error("the card does not accept the key given for it")]
    WrongCurrentKey,
    /// Not the card this vault was enrolled with (another UID, or keys it does not hold).
    #[error("this is not the card enrolled for this vault")]
    WrongCard,
    /// The card on the reader is not an NTAG 424 DNA (its GetVersion says otherwise).
    #[error("this card is not an NTAG 424 DNA")]
    NotNtag424,
}

/// The 32-byte secret all of a card's AES keys derive from. Kept in the OS keyring, never in a
/// file; zeroized on drop.
#[derive(Clone)]
pub struct CardMasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CardMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardMasterKey(..)")
    }
}

impl CardMasterKey {
    /// A fresh random master key.
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// From its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// The 32 bytes (for the keyring).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// AES key number `no` (0–4): BLAKE3-derive-key("tessera v1 ntag424 key", master ‖ no),
    /// first 16 bytes.
    pub fn key(&self, no: u8) -> Zeroizing<Key> {
        let mut h = blake3::Hasher::new_derive_key("tessera v1 ntag424 key");
        h.update(&self.0[..]);
        h.update(&[no]);
        let mut full = Zeroizing::new([0u8; 32]);
        h.finalize_xof().fill(&mut full[..]);
        let mut k = Zeroizing::new([0u8; 16]);
        k.copy_from_slice(&full[..16]);
        k
    }
}

/// The secret file's slots as read (zeroized on drop).
pub type SecretSlots = Zeroizing<[[u8; SECRET_LEN]; SECRET_SLOTS]>;

/// What the unlock read returns.
pub struct CardRead {
    /// The card's UID (from the SUN, which the SDM keys authenticate).
    pub uid: [u8; 7],
    /// The SUN read counter of this read.
    pub counter: u32,
    /// Both slots of the secret file (zeroized on drop); the card secret is in one of them.
    pub slots: SecretSlots,
}

impl std::fmt::Debug for CardRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardRead")
            .field("uid", &self.uid)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// What [`probe`] finds out without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The UID the reader reports (`FF CA 00 00 00`).
    pub uid: [u8; 7],
    /// Whether the master key is still the factory default (all zero).
    pub factory: bool,
}

fn tx(t: &mut dyn Transport, c: &[u8]) -> Result<Vec<u8>, TagError> {
    Ok(t.transmit(c)?)
}

/// The most response frames [`transceive`] collects (a 256-byte file in Full mode is two).
const MAX_FRAMES: usize = 8;

/// Sends a native command and collects its whole response: while the card answers `91 AF`
/// (more frames), asks for the next one with `90 AF 00 00 00`. Returns the data of all frames
/// followed by the last status word, as one R-APDU.
pub fn transceive(t: &mut dyn Transport, c: &[u8]) -> Result<Vec<u8>, TagError> {
    let mut r = tx(t, c)?;
    let mut data = Vec::new();
    for _ in 0..MAX_FRAMES {
        let (d, status) = apdu::split(&r)?;
        data.extend_from_slice(d);
        if status != Status::AdditionalFrame {
            data.extend_from_slice(&r[r.len() - 2..]);
            return Ok(data);
        }
        r = tx(t, &[0x90, 0xAF, 0x00, 0x00, 0x00])?;
    }
    Err(NfcError::Malformed("response chained over too many frames").into())
}

/// What GetVersion reports (datasheet §10.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardVersion {
    /// Vendor, type, subtype, major, minor, storage size, protocol of the hardware.
    pub hardware: [u8; 7],
    /// The same of the software.
    pub software: [u8; 7],
    /// The UID (all zero with random ID).
    pub uid: [u8; 7],
    /// Batch number, fab key, week and year of production (BCD).
    pub production: [u8; 7],
}

impl CardVersion {
    /// An NXP NTAG (type 04) with the NTAG 424 DNA's storage size (11h: 256–512 bytes).
    pub fn is_ntag424(&self) -> bool {
        self.hardware[0] == 0x04 && self.hardware[1] == 0x04 && self.hardware[5] == 0x11
    }
}

/// GetVersion, plain (outside a session: select first): three frames, hardware, software and
/// production data.
pub fn get_version(t: &mut dyn Transport) -> Result<CardVersion, TagError> {
    let r = transceive(t, &[0x90, 0x60, 0x00, 0x00, 0x00])?;
    let data = apdu::expect(&r, Status::Ok)?;
    if data.len() < 28 {
        return Err(NfcError::Malformed("GetVersion data shorter than 28 bytes").into());
    }
    let part = |i: usize| -> [u8; 7] {
        let mut p = [0u8; 7];
        p.copy_from_slice(&data[i * 7..i * 7 + 7]);
        p
    };
    Ok(CardVersion {
        hardware: part(0),
        software: part(1),
        uid: part(2),
        production: part(3),
    })
}

/// The UID through the reader's GET DATA pseudo-APDU.
pub fn reader_uid(t: &mut dyn Transport) -> Result<[u8; 7], TagError> {
    let r = tx(t, &[0xFF, 0xCA, 0x00, 0x00, 0x00])?;
    let (data, status) = apdu::split(&r)?;
    if status != Status::Ok {
        return Err(NfcError::Card(status).into());
    }
    data.try_into()
        .map_err(|_| NfcError::Malformed("UID length (a 7-byte UID is expected)").into())
}

fn select(t: &mut dyn Transport) -> Result<(), TagError> {
    let mut r = tx(t, &apdu::select_ndef_application())?;
    if r.ends_with(&[0x69, 0x85]) {
        // An exchange left unfinished (an interrupted authentication or chained response) is
        // abandoned by the card with 6985: select again.
        r = tx(t, &apdu::select_ndef_application())?;
    }
    apdu::expect(&r, Status::Ok)?;
    Ok(())
}

fn random16(rng: &mut dyn RngCore) -> [u8; 16] {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b
}

/// AuthenticateEV2First with `key` as key number `no`.
pub fn authenticate(
    t: &mut dyn Transport,
    key: &Key,
    no: u8,
    rng: &mut dyn RngCore,
) -> Result<Session, TagError> {
    let (a, c1) = Authentication::first(key, no);
    let r1 = tx(t, &c1)?;
    let (reply, c2) = a.challenge(&r1, random16(rng))?;
    let r2 = tx(t, &c2)?;
    Ok(reply.finish(&r2)?)
}

fn run(
    t: &mut dyn Transport,
    s: &mut Session,
    ins: u8,
    header: &[u8],
    data: &[u8],
    mode: CommMode,
) -> Result<Vec<u8>, TagError> {
    let (c, p) = s.command(ins, header, data, mode)?;
    let r = transceive(t, &c)?;
    Ok(s.response(p, &r)?)
}

fn file_range(no: u8, offset: usize, len: usize) -> [u8; 7] {
    let (o, l) = (offset as u32, len as u32);
    let (o, l) = (o.to_le_bytes(), l.to_le_bytes());
    [no, o[0], o[1], o[2], l[0], l[1], l[2]]
}

/// Whether key `no` currently is `key` (a fresh EV2First; a wrong key is the card's
/// `AuthenticationError`, any other failure is passed on).
fn key_is(
    t: &mut dyn Transport,
    key: &Key,
    no: u8,
    rng: &mut dyn RngCore,
) -> Result<bool, TagError> {
    match authenticate(t, key, no, rng) {
        Ok(_) => Ok(true),
        Err(TagError::Card(NfcError::Card(Status::AuthenticationError))) => {
            // A failed authentication leaves the application selected on a real card; select
            // again anyway so the next attempt starts clean.
            select(t)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Reads the UID and whether the card still has its factory master key.
pub fn probe(t: &mut dyn Transport, rng: &mut dyn RngCore) -> Result<Probe, TagError> {
    let uid = reader_uid(t)?;
    select(t)?;
    let factory = key_is(t, &[0; 16], KEY_MASTER, rng)?;
    Ok(Probe { uid, factory })
}

/// The NDEF file Tessera writes: one NFC Forum external-type record `tessera.app:sun` whose
/// payload `e=<PICC data>&c=<SDMMAC>` the card fills on every read.
fn ndef_template() -> Vec<u8> {
    let payload_len = 2 + 32 + 3 + 16;
    let record_len = 3 + RECORD_TYPE.len() + payload_len;
    let mut f = Vec::with_capacity(NDEF_LEN);
    f.extend_from_slice(&(record_len as u16).to_be_bytes());
    f.push(0xD4); // MB | ME | SR | TNF 4 (external type)
    f.push(RECORD_TYPE.len() as u8);
    f.push(payload_len as u8);
    f.extend_from_slice(RECORD_TYPE);
    f.extend_from_slice(b"e=");
    f.extend_from_slice(&[b'0'; 32]);
    f.extend_from_slice(b"&c=");
    f.extend_from_slice(&[b'0'; 16]);
    debug_assert_eq!(f.len(), NDEF_LEN);
    f
}

/// ChangeFileSettings data for the NDEF file: plain, read free, write and change key 0, SDM
/// with UID + counter mirrored as encrypted PICC data (meta key 1), SDMMAC with key 2 over an
/// empty input, counter retrieval with key 1.
fn ndef_settings() -> Vec<u8> {
    let u24 = |v: usize| {
        let b = (v as u32).to_le_bytes();
        [b[0], b[1], b[2]]
    };
    let mut s = vec![
        0x40, // SDM enabled, CommMode plain
        0x00, // RW key 0, change key 0
        0xE0, // read free, write key 0
        0xC1, // UID mirror, SDMReadCtr mirror, ASCII
        0xF1, // RFU, SDMCtrRet key 1
        (KEY_SDM_META << 4) | KEY_READ,
    ];
    s.extend(u24(PICC_OFFSET));
    s.extend(u24(MAC_OFFSET)); // MAC input starts where the MAC is: empty input
    s.extend(u24(MAC_OFFSET));
    s
}

/// Provisions the card on `t` for Tessera with `new` and `secret`: the secret into the
/// proprietary file (read key 2 in Full mode, write key 3), SDM on the NDEF file, all five keys
/// changed (the master key last). `known` are master keys the card may hold now (its current
/// one when re-provisioning); with none, a card whose keys are not the factory defaults is
/// refused with [`TagError::NotFactoryFresh`].
///
/// Each key's present value is established by authenticating with it first (factory zero, each
/// known master's, or already `new`'s), so provisioning interrupted half way (card taken away)
/// is completed by running it again with the interrupted run's `new` among `known` (or as
/// `new`). Returns the UID, counter and secret of the check read done at the end.
pub fn provision(
    t: &mut dyn Transport,
    known: &[&CardMasterKey],
    new: &CardMasterKey,
    secret: &[u8; 32],
    rng: &mut dyn RngCore,
) -> Result<CardRead, TagError> {
    let uid = reader_uid(t)?;
    // Selecting ends any session left from before: GetVersion goes in plain.
    select(t)?;
    if !get_version(t)?.is_ntag424() {
        return Err(TagError::NotNtag424);
    }
    let mut old: Vec<Zeroizing<Key>> = Vec::with_capacity(5);
    for no in 0..5u8 {
        let mut candidates = vec![Zeroizing::new([0u8; 16])];
        if !known.is_empty() {
            candidates.extend(known.iter().map(|k| k.key(no)));
            candidates.push(new.key(no));
        }
        let mut found = None;
        for c in candidates {
            if key_is(t, &c, no, rng)? {
                found = Some(c);
                break;
            }
        }
        match found {
            Some(k) => old.push(k),
            None if known.is_empty() => return Err(TagError::NotFactoryFresh),
            None => return Err(TagError::WrongCurrentKey),
        }
    }
    select(t)?;
    // The secret in slot 0 and random bytes in slot 1, written with the write key in Full
    // mode.
    let mut slots = Zeroizing::new([0u8; SECRET_LEN * SECRET_SLOTS]);
    slots[..SECRET_LEN].copy_from_slice(secret);
    rng.fill_bytes(&mut slots[SECRET_LEN..]);
    let mut s3 = authenticate(t, &old[usize::from(KEY_WRITE)], KEY_WRITE, rng)?;
    run(
        t,
        &mut s3,
        0x8D,
        &file_range(SECRET_FILE, 0, slots.len()),
        &slots[..],
        CommMode::Full,
    )?;
    // NDEF template and SDM settings, then the keys, with the master key.
    let mut s0 = authenticate(t, &old[usize::from(KEY_MASTER)], KEY_MASTER, rng)?;
    let ndef = ndef_template();
    run(
        t,
        &mut s0,
        0x8D,
        &file_range(NDEF_FILE, 0, ndef.len()),
        &ndef,
        CommMode::Plain,
    )?;
    run(
        t,
        &mut s0,
        0x5F,
        &[NDEF_FILE],
        &ndef_settings(),
        CommMode::Full,
    )?;
    for no in 1..5u8 {
        let k = new.key(no);
        if *k == *old[usize::from(no)] {
            continue;
        }
        let data = Session::change_key_other(&old[usize::from(no)], &k, 1);
        run(t, &mut s0, 0xC4, &[no], &data, CommMode::Full)?;
    }
    let k0 = new.key(KEY_MASTER);
    if *k0 != *old[0] {
        // Changing the authenticated key ends the session: the card answers a bare OK.
        let data = Session::change_key_same(&k0, 1);
        let (c, _) = s0.command(0xC4, &[KEY_MASTER], &data, CommMode::Full)?;
        let r = tx(t, &c)?;
        apdu::expect(&r, Status::Ok)?;
    }
    // Check: read it back the way unlock will.
    let read = read(t, new, rng)?;
    if read.uid != uid || read.slots[0] != *secret {
        return Err(NfcError::Malformed("card read back differs from what was written").into());
    }
    Ok(read)
}

/// Reads NXP's originality signature (`Read_Sig`) and checks it against the UID: `Ok(true)`
/// for a genuine NXP chip. Informational only (a static value a clone can copy).
pub fn originality(t: &mut dyn Transport, uid: &[u8; 7]) -> Result<bool, TagError> {
    select(t)?;
    let r = tx(t, &crate::protocol::originality::READ_SIG)?;
    let sig = apdu::expect(&r, Status::SignatureOk)?;
    Ok(crate::protocol::originality::verify(uid, sig))
}

/// A hex field of the SUN URL, decoded byte by byte: the card's bytes are never sliced as text,
/// so a card that answers with multi-byte UTF-8 (or anything but hex digits) is the wrong card,
/// not a panic.
fn hex_field(s: &[u8]) -> Result<Vec<u8>, TagError> {
    let digit = |c: u8| -> Result<u8, TagError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(TagError::WrongCard),
        }
    };
    if !s.len().is_multiple_of(2) {
        return Err(TagError::WrongCard);
    }
    s.chunks_exact(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The unlock read: a fresh SUN from the NDEF file (verified with keys 1 and 2, which gives the
/// UID and the read counter), then AuthenticateEV2First with key 2 and the secret read in Full
/// mode. A card that does not hold these keys is [`TagError::WrongCard`].
pub fn read(
    t: &mut dyn Transport,
    master: &CardMasterKey,
    rng: &mut dyn RngCore,
) -> Result<CardRead, TagError> {
    select(t)?;
    let r = transceive(t, &apdu::native(0xAD, &file_range(NDEF_FILE, 0, NDEF_LEN))?)?;
    let file = apdu::expect(&r, Status::Ok)?;
    if file.len() != NDEF_LEN || file[PICC_OFFSET - 2..PICC_OFFSET] != *b"e=" {
        // Not Tessera's NDEF layout: not provisioned by Tessera.
        return Err(TagError::WrongCard);
    }
    let picc = hex_field(&file[PICC_OFFSET..PICC_OFFSET + 32])?;
    let mac = hex_field(&file[MAC_OFFSET..MAC_OFFSET + 16])?;
    let sun = sdm::verify_sun(
        &master.key(KEY_SDM_META),
        &master.key(KEY_READ),
        &picc,
        &mac,
        None,
        b"",
    )
    .map_err(|_| TagError::WrongCard)?;
    if !sun.valid {
        return Err(TagError::WrongCard);
    }
    let mut s = match authenticate(t, &master.key(KEY_READ), KEY_READ, rng) {
        Ok(s) => s,
        Err(TagError::Card(NfcError::Card(Status::AuthenticationError))) => {
            return Err(TagError::WrongCard);
        }
        Err(e) => return Err(e),
    };
    let slots = read_slots(t, &mut s)?;
    Ok(CardRead {
        uid: sun.uid,
        counter: sun.counter,
        slots,
    })
}

/// Both slots of the secret file, in Full mode, in a session with the read key.
fn read_slots(t: &mut dyn Transport, s: &mut Session) -> Result<SecretSlots, TagError> {
    let mut data = run(
        t,
        s,
        0xAD,
        &file_range(SECRET_FILE, 0, SECRET_LEN * SECRET_SLOTS),
        &[],
        CommMode::Full,
    )?;
    if data.len() != SECRET_LEN * SECRET_SLOTS {
        data.zeroize();
        return Err(NfcError::Malformed("secret file length").into());
    }
    let mut slots = Zeroizing::new([[0u8; SECRET_LEN]; SECRET_SLOTS]);
    for (slot, chunk) in slots.iter_mut().zip(data.chunks_exact(SECRET_LEN)) {
        slot.copy_from_slice(chunk);
    }
    data.zeroize();
    Ok(slots)
}

/// Writes `secret` into `slot` of the secret file (the write key, Full mode), then reads the
/// file back with the read key and checks that slot: `Ok` only when the card holds the new
/// secret. The other slot is not touched, so a card pulled during the write still holds the
/// secret the vault opens with now (`docs/ntag424.md` §Secret rotation). `uid` must be the
/// card's (from the reader), else [`TagError::WrongCard`] before anything is written.
pub fn write_secret(
    t: &mut dyn Transport,
    master: &CardMasterKey,
    uid: &[u8; 7],
    slot: usize,
    secret: &[u8; SECRET_LEN],
    rng: &mut dyn RngCore,
) -> Result<(), TagError> {
    if slot >= SECRET_SLOTS {
        return Err(NfcError::Malformed("secret slot out of range").into());
    }
    if reader_uid(t)? != *uid {
        return Err(TagError::WrongCard);
    }
    select(t)?;
    let mut s3 = match authenticate(t, &master.key(KEY_WRITE), KEY_WRITE, rng) {
        Ok(s) => s,
        Err(TagError::Card(NfcError::Card(Status::AuthenticationError))) => {
            return Err(TagError::WrongCard);
        }
        Err(e) => return Err(e),
    };
    run(
        t,
        &mut s3,
        0x8D,
        &file_range(SECRET_FILE, slot * SECRET_LEN, SECRET_LEN),
        secret,
        CommMode::Full,
    )?;
    let mut s2 = authenticate(t, &master.key(KEY_READ), KEY_READ, rng)?;
    let back = read_slots(t, &mut s2)?;
    if back[slot] != *secret {
        return Err(
            NfcError::Malformed("the secret read back differs from what was written").into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardState;
    use rand::SeedableRng as _;

    const UID: [u8; 7] = [0x04, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60];

    fn card() -> Card {
        Card::new(CardState::factory(UID))
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn t(card: &mut Card) -> InProcess<'_, impl FnMut() -> [u8; 16] + use<>> {
        let mut n = 0u8;
        InProcess {
            card,
            random: move || {
                n = n.wrapping_add(1);
                [n; 16]
            },
        }
    }

    #[test]
    fn provision_then_read_gives_the_secret_and_increasing_counters() {
        let mut c = card();
        let mut r = rng();
        let master = CardMasterKey::generate(&mut r);
        let p = probe(&mut t(&mut c), &mut r).unwrap();
        assert_eq!(
            p,
            Probe {
                uid: UID,
                factory: true
            }
        );
        let first = provision(&mut t(&mut c), &[], &master, &[5; 32], &mut r).unwrap();
        assert_eq!(first.uid, UID);
        assert_eq!(first.slots[0], [5; 32]);
        assert_ne!(first.slots[1], [0; 32], "slot 1 holds random bytes");
        let mut last = first.counter;
        for _ in 0..3 {
            c.reset();
            let again = read(&mut t(&mut c), &master, &mut r).unwrap();
            assert_eq!(again.slots[0], [5; 32]);
            assert!(again.counter > last);
            last = again.counter;
        }
        assert!(!probe(&mut t(&mut c), &mut r).unwrap().factory);
        // Every key moved away from the default.
        assert!(c.state.keys.iter().all(|k| *k != [0; 16]));
    }

    #[test]
    fn a_provisioned_card_is_refused_without_its_current_key_and_accepted_with_it() {
        let mut c = card();
        let mut r = rng();
        let (a, b) = (
            CardMasterKey::generate(&mut r),
            CardMasterKey::generate(&mut r),
        );
        provision(&mut t(&mut c), &[], &a, &[1; 32], &mut r).unwrap();
        assert_eq!(
            provision(&mut t(&mut c), &[], &b, &[2; 32], &mut r).err(),
            Some(TagError::NotFactoryFresh)
        );
        assert_eq!(
            provision(&mut t(&mut c), &[&b], &b, &[2; 32], &mut r).err(),
            Some(TagError::WrongCurrentKey)
        );
        provision(&mut t(&mut c), &[&a], &b, &[2; 32], &mut r).unwrap();
        assert_eq!(read(&mut t(&mut c), &b, &mut r).unwrap().slots[0], [2; 32]);
        assert_eq!(
            read(&mut t(&mut c), &a, &mut r).err(),
            Some(TagError::WrongCard)
        );
    }

    #[test]
    fn interrupted_provisioning_can_be_completed() {
        let mut r = rng();
        let (a, b) = (
            CardMasterKey::generate(&mut r),
            CardMasterKey::generate(&mut r),
        );
        // Cut the transport after each possible number of commands; a second run that knows
        // the interrupted run's key finishes the job (with another new key, even).
        for cut in 1..50 {
            let mut c = card();
            let mut cutting = Cutting {
                inner: t(&mut c),
                left: cut,
            };
            let _ = provision(&mut cutting, &[], &a, &[3; 32], &mut r);
            c.reset();
            provision(&mut t(&mut c), &[&a], &b, &[4; 32], &mut r)
                .unwrap_or_else(|e| panic!("cut after {cut} commands: {e}"));
            assert_eq!(read(&mut t(&mut c), &b, &mut r).unwrap().slots[0], [4; 32]);
        }
    }

    #[test]
    fn a_secret_written_into_one_slot_leaves_the_other_whatever_happens() {
        let mut r = rng();
        let (a, b) = (
            CardMasterKey::generate(&mut r),
            CardMasterKey::generate(&mut r),
        );
        let mut c = card();
        provision(&mut t(&mut c), &[], &a, &[1; 32], &mut r).unwrap();
        let before = read(&mut t(&mut c), &a, &mut r).unwrap();
        write_secret(&mut t(&mut c), &a, &UID, 1, &[2; 32], &mut r).unwrap();
        let after = read(&mut t(&mut c), &a, &mut r).unwrap();
        assert_eq!((after.slots[0], after.slots[1]), ([1; 32], [2; 32]));
        assert!(after.counter > before.counter);
        write_secret(&mut t(&mut c), &a, &UID, 0, &[3; 32], &mut r).unwrap();
        let after = read(&mut t(&mut c), &a, &mut r).unwrap();
        assert_eq!((after.slots[0], after.slots[1]), ([3; 32], [2; 32]));
        // Another card's keys, another UID, a slot that does not exist: nothing written.
        for e in [
            write_secret(&mut t(&mut c), &b, &UID, 1, &[9; 32], &mut r),
            write_secret(&mut t(&mut c), &a, &[4; 7], 1, &[9; 32], &mut r),
            write_secret(&mut t(&mut c), &a, &UID, 2, &[9; 32], &mut r),
        ] {
            assert!(e.is_err());
        }
        assert_eq!(read(&mut t(&mut c), &a, &mut r).unwrap().slots[1], [2; 32]);

        // Cut after every possible command: slot 0 always holds its secret, slot 1 the old or
        // the new one (the in-process card applies a command whole; a torn write on a real
        // card can only damage slot 1, which `tessera-store`'s tests cover).
        for cut in 0..12 {
            let mut cutting = Cutting {
                inner: t(&mut c),
                left: cut,
            };
            let done = write_secret(&mut cutting, &a, &UID, 1, &[10 + cut as u8; 32], &mut r);
            c.reset();
            let now = read(&mut t(&mut c), &a, &mut r).unwrap();
            assert_eq!(now.slots[0], [3; 32], "cut after {cut}");
            if done.is_ok() {
                assert_eq!(now.slots[1], [10 + cut as u8; 32], "cut after {cut}");
            }
        }
    }

    struct Cutting<T> {
        inner: T,
        left: usize,
    }

    impl<T: Transport> Transport for Cutting<T> {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
            if self.left == 0 {
                return Err(ReaderError::CardRemoved);
            }
            self.left -= 1;
            self.inner.transmit(apdu)
        }
    }

    #[test]
    fn a_foreign_card_is_the_wrong_card() {
        let mut r = rng();
        let (a, b) = (
            CardMasterKey::generate(&mut r),
            CardMasterKey::generate(&mut r),
        );
        let mut c = card();
        provision(&mut t(&mut c), &[], &a, &[1; 32], &mut r).unwrap();
        assert_eq!(
            read(&mut t(&mut c), &b, &mut r).err(),
            Some(TagError::WrongCard)
        );
        // A factory card has no Tessera NDEF record.
        let mut f = card();
        assert_eq!(
            read(&mut t(&mut f), &a, &mut r).err(),
            Some(TagError::WrongCard)
        );
    }

    /// Review finding: the SUN fields were decoded by slicing the card's bytes as a `str` two
    /// bytes at a time, which panics inside a multi-byte character a hostile card can send.
    #[test]
    fn tag_parser_never_slices_inside_a_character() {
        struct Accented<T>(T);
        impl<T: Transport> Transport for Accented<T> {
            fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
                let mut r = self.0.transmit(apdu)?;
                if apdu.get(1) == Some(&0xAD) && r.len() > PICC_OFFSET + 3 {
                    // "é" (C3 A9) across the boundary of the first hex pair.
                    r[PICC_OFFSET + 1..PICC_OFFSET + 3].copy_from_slice(&[0xC3, 0xA9]);
                }
                Ok(r)
            }
        }
        let mut r = rng();
        let master = CardMasterKey::generate(&mut r);
        let mut c = card();
        provision(&mut t(&mut c), &[], &master, &[3; 32], &mut r).unwrap();
        assert_eq!(
            read(&mut Accented(t(&mut c)), &master, &mut r).err(),
            Some(TagError::WrongCard)
        );
        assert_eq!(hex_field(b"0aF1").unwrap(), [0x0A, 0xF1]);
        for bad in [&b"0g"[..], b"abc", "é0".as_bytes(), b"+1"] {
            assert_eq!(hex_field(bad).err(), Some(TagError::WrongCard), "{bad:?}");
        }
        // The card still reads normally without the rewrite.
        assert_eq!(
            read(&mut t(&mut c), &master, &mut r).unwrap().slots[0],
            [3; 32]
        );
    }

    #[test]
    fn derived_keys_differ_per_number_and_master() {
        let a = CardMasterKey::from_bytes(&[1; 32]);
        let b = CardMasterKey::from_bytes(&[2; 32]);
        let ka: Vec<_> = (0..5).map(|n| *a.key(n)).collect();
        for i in 0..5 {
            for j in 0..5 {
                assert_eq!(i == j, ka[i] == ka[j]);
            }
            assert_ne!(ka[i], *b.key(i as u8));
        }
        assert!(!format!("{a:?}").contains('1'));
    }
}
