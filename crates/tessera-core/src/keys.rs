//! This device's keys and their rotation (`docs/keys.md`, "Rotation").
//!
//! Everything here runs inside vault transactions and never awaits: the engine calls
//! `maintain` with the injected clock's time before it logs in and before it seals, and it
//! publishes what `Maintained` says changed. The schedule is a pure function ([`due`]) so it
//! is tested without a vault.

use crate::run_to_end::RunToEnd as _;
use rand::{CryptoRng, Rng};
use tessera_crypto::signal::{
    GenericSignedPreKey as _, KeyPair, KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord,
    Timestamp, kem,
};
use tessera_crypto::{
    AccountId, AccountIdentity, AccountPublic, CryptoError, DeviceCertificate,
    DeviceCertificateFields, EnvelopeKeyPair, EnvelopeKeyRing, EpochCertificate, EpochSigningKey,
    HybridSigningKey, MAX_CLOCK_SKEW_MS, MAX_ENVELOPE_AGE_MS, OneTimePrekeyBatch, PrekeyStatement,
    SignedPrekeys,
};
use tessera_net::Transport;
use tessera_proto::{RelayAddress, WirePrekey};
use tessera_store::{Vault, VaultError};
use zeroize::Zeroizing;

use crate::CoreError;

pub(crate) const DAY_MS: u64 = 86_400_000;
/// This build's device number (one device per account for now; libsignal allows 1–127).
pub(crate) const DEVICE_ID: u32 = 1;
/// One-time prekeys per uploaded batch.
pub(crate) const PREKEY_BATCH: u32 = 100;

/// A device certificate is valid this long from its issue (its window starts one day earlier,
/// for clocks that run behind).
pub const DEVICE_CERT_LIFETIME_MS: u64 = 45 * DAY_MS;
/// A device renews its certificate (and with it its envelope key) once less than this is left:
/// 30 days after issue. Senders refresh a cached certificate in the same last 15 days.
pub const DEVICE_CERT_RENEW_BEFORE_END_MS: u64 = 15 * DAY_MS;
/// A sending epoch lasts this long; its certificate adds a day of slack at each end.
pub const EPOCH_MS: u64 = 7 * DAY_MS;
/// The signed prekey and the Kyber last-resort prekey are replaced this often.
pub const SIGNED_PREKEY_ROTATION_MS: u64 = 2 * DAY_MS;
/// Replaced prekeys (signed, Kyber, an unused one-time batch) stay this long for session starts
/// still in flight, then are deleted.
pub const PREKEY_GRACE_MS: u64 = 30 * DAY_MS;
/// A retired envelope key stays until this long after its certificate ended: the longest an
/// envelope sealed to it can wait in a mailbox.
pub const ENVELOPE_KEY_GRACE_MS: u64 = MAX_ENVELOPE_AGE_MS;

const ENVELOPE_RETIRED: &str = "envelope.retired.";

/// This device's keys, in memory while unlocked.
pub(crate) struct Me {
    pub identity: AccountIdentity,
    pub public: AccountPublic,
    pub account_id: AccountId,
    pub auth: HybridSigningKey,
    pub ring: EnvelopeKeyRing,
    pub epoch: EpochSigningKey,
    pub certificate: DeviceCertificate,
    pub relay: RelayAddress,
    pub name: String,
    pub transport: Transport,
}

/// Reads a local secret of exactly `N` bytes.
pub(crate) fn local_array<const N: usize>(
    v: &Vault,
    name: &str,
) -> Result<Zeroizing<[u8; N]>, CoreError> {
    let bytes = v
        .local(name)?
        .ok_or(CoreError::Vault(VaultError::NotInitialised))?;
    if bytes.len() != N {
        return Err(CoreError::Vault(VaultError::Corrupt));
    }
    let mut out = Zeroizing::new([0u8; N]);
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn local_u64(v: &Vault, name: &str) -> Result<Option<u64>, CoreError> {
    Ok(v.local(name)?
        .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes)))
}

fn local_u32(v: &Vault, name: &str) -> Result<Option<u32>, CoreError> {
    Ok(v.local(name)?
        .and_then(|b| b.as_slice().try_into().ok().map(u32::from_be_bytes)))
}

fn setting(v: &Vault, name: &str) -> Result<String, CoreError> {
    v.setting(name)?
        .ok_or(CoreError::Vault(VaultError::NotInitialised))
}

fn corrupt<E>(_: E) -> CoreError {
    CoreError::Vault(VaultError::Corrupt)
}

/// Loads this device's keys, the current envelope key and every retired one still in grace.
pub(crate) fn load_me(v: &Vault, transport: Transport) -> Result<Me, CoreError> {
    let identity = v.local_identity()?;
    let public = identity.public();
    let auth = HybridSigningKey::from_parts(
        local_array::<32>(v, "auth.curve")?,
        local_array::<32>(v, "auth.mldsa")?,
    )
    .map_err(corrupt)?;
    let cert_bytes = v
        .local("device.certificate")?
        .ok_or(CoreError::Vault(VaultError::NotInitialised))?;
    let certificate = DeviceCertificate::from_bytes(&cert_bytes).map_err(corrupt)?;
    let epoch_cert = v
        .local("epoch.certificate")?
        .ok_or(CoreError::Vault(VaultError::NotInitialised))?;
    let epoch = EpochSigningKey::from_parts(
        local_array::<32>(v, "epoch.secret")?,
        EpochCertificate::from_bytes(&epoch_cert).map_err(corrupt)?,
    )
    .map_err(corrupt)?;
    let mut ring = EnvelopeKeyRing::new();
    // The current key has no end: its grace starts when a renewal retires it.
    ring.insert(
        EnvelopeKeyPair::from_seeds(
            local_array::<32>(v, "envelope.x25519")?,
            local_array::<64>(v, "envelope.mlkem")?,
        ),
        u64::MAX,
    );
    for (name, seeds) in v.locals_with_prefix(ENVELOPE_RETIRED)? {
        let serial: u32 = name[ENVELOPE_RETIRED.len()..].parse().map_err(corrupt)?;
        let until = v
            .retired_until("envelope", serial)?
            .ok_or(CoreError::Vault(VaultError::Corrupt))?;
        ring.insert(envelope_from_retired(&seeds)?, until);
    }
    if v.local("device.registered_serial")?.is_none() {
        // Vaults from before rotation: the relay holds the one certificate they ever made.
        v.set_local(
            "device.registered_serial",
            &certificate.fields.serial.to_be_bytes(),
        )?;
    }
    let relay: RelayAddress = setting(v, "relay")?.parse().map_err(corrupt)?;
    Ok(Me {
        account_id: public.account_id(),
        public,
        identity,
        auth,
        ring,
        epoch,
        certificate,
        relay,
        name: setting(v, "name")?,
        transport,
    })
}

fn envelope_from_retired(seeds: &[u8]) -> Result<EnvelopeKeyPair, CoreError> {
    if seeds.len() != 96 {
        return Err(CoreError::Vault(VaultError::Corrupt));
    }
    let mut x = Zeroizing::new([0u8; 32]);
    let mut m = Zeroizing::new([0u8; 64]);
    x.copy_from_slice(&seeds[..32]);
    m.copy_from_slice(&seeds[32..]);
    Ok(EnvelopeKeyPair::from_seeds(x, m))
}

/// Issues a device certificate for `envelope` starting now.
pub(crate) fn issue_certificate<R: Rng + CryptoRng>(
    identity: &AccountIdentity,
    auth: &HybridSigningKey,
    envelope: &EnvelopeKeyPair,
    serial: u32,
    now: u64,
    rng: &mut R,
) -> Result<DeviceCertificate, CoreError> {
    Ok(DeviceCertificate::issue(
        identity,
        DeviceCertificateFields {
            device_id: DEVICE_ID,
            serial,
            auth_key: auth.public().clone(),
            envelope_key: envelope.public().clone(),
            not_before: now.saturating_sub(MAX_CLOCK_SKEW_MS),
            not_after: now + DEVICE_CERT_LIFETIME_MS,
        },
        rng,
    )?)
}

/// Starts a sending epoch now.
pub(crate) fn new_epoch<R: Rng + CryptoRng>(
    identity: &AccountIdentity,
    now: u64,
    rng: &mut R,
) -> Result<EpochSigningKey, CoreError> {
    Ok(EpochSigningKey::generate(
        identity,
        DEVICE_ID,
        now.saturating_sub(MAX_CLOCK_SKEW_MS),
        now + EPOCH_MS + MAX_CLOCK_SKEW_MS,
        rng,
    )?)
}

/// Stores the current envelope key, device certificate and epoch (account set-up).
pub(crate) fn store_device_keys(
    v: &Vault,
    envelope: &EnvelopeKeyPair,
    certificate: &DeviceCertificate,
    epoch: &EpochSigningKey,
) -> Result<(), CoreError> {
    let (ex, em) = envelope.to_seeds();
    v.set_local("envelope.x25519", &ex[..])?;
    v.set_local("envelope.mlkem", &em[..])?;
    v.set_local("device.certificate", &certificate.to_bytes())?;
    store_epoch(v, epoch)
}

fn store_epoch(v: &Vault, epoch: &EpochSigningKey) -> Result<(), CoreError> {
    v.set_local("epoch.secret", &epoch.secret()[..])?;
    v.set_local("epoch.certificate", &epoch.certificate().to_bytes())?;
    Ok(())
}

/// What is due at a given time. Pure: see [`due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// A new device certificate and envelope key.
    pub device_certificate: bool,
    /// A new sending epoch.
    pub epoch: bool,
    /// A new signed prekey and Kyber prekey.
    pub signed_prekey: bool,
}

/// The schedule (`docs/keys.md`): which rotations are due at `now`, given the current device
/// certificate's end, the current epoch certificate's window and when the signed prekey was
/// last replaced (`None`: never recorded, as in vaults from before rotation).
pub fn due(
    device_not_after: u64,
    epoch_window: (u64, u64),
    signed_prekey_since: Option<u64>,
    now: u64,
) -> Due {
    let (epoch_from, epoch_to) = epoch_window;
    let epoch_started = epoch_from.saturating_add(MAX_CLOCK_SKEW_MS);
    Due {
        device_certificate: now.saturating_add(DEVICE_CERT_RENEW_BEFORE_END_MS) >= device_not_after,
        epoch: now >= epoch_started.saturating_add(EPOCH_MS)
            || now.saturating_add(MAX_CLOCK_SKEW_MS) >= epoch_to
            || now < epoch_from,
        signed_prekey: signed_prekey_since
            .is_none_or(|t| now >= t.saturating_add(SIGNED_PREKEY_ROTATION_MS) || now < t),
    }
}

/// Whether a contact's cached device certificate should be fetched again: its owner renews in
/// the last [`DEVICE_CERT_RENEW_BEFORE_END_MS`] of it.
pub fn contact_certificate_stale(not_after: u64, now: u64) -> bool {
    now.saturating_add(DEVICE_CERT_RENEW_BEFORE_END_MS) >= not_after
}

/// What [`maintain`] changed, for the engine to tell the relay.
#[derive(Debug, Default)]
pub(crate) struct Maintained {
    /// The device certificate was renewed: register it before logging in again.
    pub renewed_certificate: bool,
    /// A new signed prekey statement waits to be published.
    pub prekeys_unpublished: bool,
    /// Private keys deleted because their grace ended.
    pub deleted: usize,
}

/// Performs every rotation due at `now` and deletes keys whose grace ended, in one vault
/// transaction; updates `me` to match.
pub(crate) fn maintain<R: Rng + CryptoRng>(
    v: &Vault,
    me: &mut Me,
    now: u64,
    rng: &mut R,
) -> Result<Maintained, CoreError> {
    let mut out = Maintained::default();
    let epoch_cert = me.epoch.certificate();
    let due = due(
        me.certificate.fields.not_after,
        (epoch_cert.not_before(), epoch_cert.not_after()),
        local_u64(v, "prekeys.rotated_at")?,
        now,
    );
    let mut new_ring_key = None;
    let mut retired_ring_key = None;
    let mut new_epoch_key = None;
    v.transaction(|v| -> Result<(), CoreError> {
        if due.device_certificate {
            let serial = me.certificate.fields.serial + 1;
            let (retired, renewed) = renew_certificate(v, me, serial, now, rng)?;
            retired_ring_key = Some(retired);
            new_ring_key = Some(renewed);
            out.renewed_certificate = true;
        }
        if due.epoch {
            let epoch = new_epoch(&me.identity, now, rng)?;
            store_epoch(v, &epoch)?;
            new_epoch_key = Some(epoch);
        }
        if due.signed_prekey {
            rotate_signed_prekey(v, &me.identity, now, rng)?;
            out.prekeys_unpublished = true;
        }
        out.deleted = delete_due(v, now)?;
        // Contacts' envelope links whose last envelope can no longer open (docs/envelope.md).
        out.deleted += v.forget_inbound_links_before(now)?;
        // Replay detection needs ids only as long as envelopes that old are accepted.
        v.forget_seen_before(now.saturating_sub(MAX_ENVELOPE_AGE_MS + 2 * MAX_CLOCK_SKEW_MS))?;
        if v.local("prekeys.unpublished")?.is_some() {
            out.prekeys_unpublished = true;
        }
        if out.prekeys_unpublished {
            v.set_local("prekeys.unpublished", &[1])?;
        }
        Ok(())
    })?;
    // The vault committed: now the keys in memory follow.
    if let Some((old, until)) = retired_ring_key {
        me.ring.insert(old, until);
    }
    if let Some((envelope, certificate)) = new_ring_key {
        me.ring.insert(envelope, u64::MAX);
        me.certificate = certificate;
    }
    if let Some(epoch) = new_epoch_key {
        me.epoch = epoch;
    }
    me.ring.prune(now);
    if out.renewed_certificate || out.deleted > 0 {
        tracing::info!(
            renewed = out.renewed_certificate,
            deleted = out.deleted,
            "key maintenance"
        );
    }
    Ok(out)
}

/// A retired envelope key with the end of its grace, and a new envelope key with its
/// certificate: what [`renew_certificate`] hands back for `me` once the vault committed.
type Renewal = ((EnvelopeKeyPair, u64), (EnvelopeKeyPair, DeviceCertificate));

/// Retires the current envelope key (it opens envelopes sealed to the old certificate until
/// ENVELOPE_KEY_GRACE_MS after that certificate ends) and issues a new key and certificate
/// with `serial`. Inside the caller's transaction; `me` is not changed.
fn renew_certificate<R: Rng + CryptoRng>(
    v: &Vault,
    me: &Me,
    serial: u32,
    now: u64,
    rng: &mut R,
) -> Result<Renewal, CoreError> {
    let old = &me.certificate.fields;
    let mut seeds = Zeroizing::new(Vec::with_capacity(96));
    seeds.extend_from_slice(&local_array::<32>(v, "envelope.x25519")?[..]);
    seeds.extend_from_slice(&local_array::<64>(v, "envelope.mlkem")?[..]);
    v.set_local(&format!("{ENVELOPE_RETIRED}{}", old.serial), &seeds)?;
    // Senders may have sealed to it until now (a peer's newest knowledge of this device is
    // its last certificate, however old): the grace counts from the later of its end and now.
    let until = old.not_after.max(now) + ENVELOPE_KEY_GRACE_MS;
    v.retire_key("envelope", old.serial, until)?;
    let retired = (envelope_from_retired(&seeds)?, until);
    let envelope = EnvelopeKeyPair::generate(rng);
    let certificate = issue_certificate(&me.identity, &me.auth, &envelope, serial, now, rng)?;
    let (ex, em) = envelope.to_seeds();
    v.set_local("envelope.x25519", &ex[..])?;
    v.set_local("envelope.mlkem", &em[..])?;
    v.set_local("device.certificate", &certificate.to_bytes())?;
    Ok((retired, (envelope, certificate)))
}

/// After a restore from a backup (`docs/backup.md`, "Starting over"): the keys in the backup
/// may be older than what the relay and contacts know of this device, so everything that
/// others address is replaced at once. A new envelope key and certificate with a serial above
/// both the vault's and the relay's (`relay_serial`), a new sending epoch, a new signed and
/// Kyber prekey (published at the next connect, with a new one-time batch if the relay holds
/// another). One vault transaction; `me` follows once it committed.
pub(crate) fn start_over<R: Rng + CryptoRng>(
    v: &Vault,
    me: &mut Me,
    relay_serial: u32,
    now: u64,
    rng: &mut R,
) -> Result<(), CoreError> {
    let serial = me.certificate.fields.serial.max(relay_serial) + 1;
    let (retired, renewed, epoch) = v.transaction(|v| -> Result<_, CoreError> {
        let (retired, renewed) = renew_certificate(v, me, serial, now, rng)?;
        let epoch = new_epoch(&me.identity, now, rng)?;
        store_epoch(v, &epoch)?;
        rotate_signed_prekey(v, &me.identity, now, rng)?;
        v.set_local("prekeys.unpublished", &[1])?;
        Ok((retired, renewed, epoch))
    })?;
    me.ring.insert(retired.0, retired.1);
    me.ring.insert(renewed.0, u64::MAX);
    me.certificate = renewed.1;
    me.epoch = epoch;
    me.ring.prune(now);
    Ok(())
}

/// Deletes every retired key whose grace ended; returns how many private keys went.
fn delete_due(v: &Vault, now: u64) -> Result<usize, CoreError> {
    let mut deleted = 0;
    for k in v.retired_keys_due(now)? {
        match k.kind.as_str() {
            "envelope" => {
                v.delete_local(&format!("{ENVELOPE_RETIRED}{}", k.id))?;
                deleted += 1;
            }
            "signed_prekey" => {
                v.delete_signed_prekey(k.id)?;
                deleted += 1;
            }
            "kyber_prekey" => {
                v.delete_kyber_prekey(k.id)?;
                deleted += 1;
            }
            "prekey_batch" => {
                let first = batch_first_id(k.id);
                deleted += v.delete_one_time_prekeys(first, first + PREKEY_BATCH - 1)?;
            }
            _ => {}
        }
        v.forget_retired_key(&k.kind, k.id)?;
    }
    Ok(deleted)
}

fn batch_first_id(batch_id: u32) -> u32 {
    1 + batch_id.saturating_sub(1) * PREKEY_BATCH
}

fn registration_id(v: &Vault) -> Result<u32, CoreError> {
    local_u32(v, "registration_id")?.ok_or(CoreError::Vault(VaultError::NotInitialised))
}

/// The current signed statement (`None` before the first upload).
pub(crate) fn current_statement(v: &Vault) -> Result<Option<SignedPrekeys>, CoreError> {
    match v.local("prekeys.signed")? {
        Some(b) => Ok(Some(SignedPrekeys::from_bytes(&b).map_err(corrupt)?)),
        None => Ok(None),
    }
}

struct SignedPair {
    spk_id: u32,
    spk: tessera_crypto::signal::PublicKey,
    spk_sig: [u8; 64],
    kyber_id: u32,
    kyber: Vec<u8>,
    kyber_sig: [u8; 64],
}

/// Makes and stores a signed prekey and a Kyber prekey with the given ids.
fn new_signed_pair<R: Rng + CryptoRng>(
    v: &Vault,
    identity: &AccountIdentity,
    spk_id: u32,
    kyber_id: u32,
    now: u64,
    rng: &mut R,
) -> Result<SignedPair, CoreError> {
    let signal = identity.signal_identity()?;
    let mut s = v.signal();
    let spk = KeyPair::generate(rng);
    let kyber = kem::KeyPair::generate(kem::KeyType::Kyber1024, rng);
    let spk_sig = signal
        .private_key()
        .calculate_signature(&spk.public_key.serialize(), rng)
        .map_err(|_| CoreError::Crypto(CryptoError::Signing))?;
    let kyber_sig = signal
        .private_key()
        .calculate_signature(&kyber.public_key.serialize(), rng)
        .map_err(|_| CoreError::Crypto(CryptoError::Signing))?;
    let ts = Timestamp::from_epoch_millis(now);
    // The vault's stores are synchronous behind libsignal's async traits: they complete on the
    // first poll.
    tessera_crypto::signal::SignedPreKeyStore::save_signed_pre_key(
        &mut s,
        spk_id.into(),
        &SignedPreKeyRecord::new(spk_id.into(), ts, &spk, &spk_sig),
    )
    .run_to_end()?;
    tessera_crypto::signal::KyberPreKeyStore::save_kyber_pre_key(
        &mut s,
        kyber_id.into(),
        &KyberPreKeyRecord::new(kyber_id.into(), ts, &kyber, &kyber_sig),
    )
    .run_to_end()?;
    let fixed = |sig: &[u8]| -> Result<[u8; 64], CoreError> {
        sig.try_into().map_err(|_| CoreError::BadContent)
    };
    v.set_local("prekeys.rotated_at", &now.to_be_bytes())?;
    Ok(SignedPair {
        spk_id,
        spk: spk.public_key,
        spk_sig: fixed(&spk_sig)?,
        kyber_id,
        kyber: kyber.public_key.serialize().to_vec(),
        kyber_sig: fixed(&kyber_sig)?,
    })
}

fn sign_statement<R: Rng + CryptoRng>(
    v: &Vault,
    identity: &AccountIdentity,
    pair: &SignedPair,
    batch: (u32, u32, [u8; 32]),
    rng: &mut R,
) -> Result<SignedPrekeys, CoreError> {
    let (batch_id, batch_size, batch_root) = batch;
    let statement = PrekeyStatement {
        account_id: identity.public().account_id(),
        device_id: DEVICE_ID,
        registration_id: registration_id(v)?,
        signed_prekey_id: pair.spk_id,
        signed_prekey: pair.spk,
        kyber_prekey_id: pair.kyber_id,
        kyber_prekey: pair.kyber.clone(),
        batch_id,
        batch_size,
        batch_root,
    };
    let signature = statement.sign(identity, rng)?;
    let signed = SignedPrekeys {
        statement,
        signature,
        signed_prekey_signature: pair.spk_sig,
        kyber_prekey_signature: pair.kyber_sig,
    };
    v.set_local("prekeys.signed", &signed.to_bytes())?;
    Ok(signed)
}

/// Replaces the signed and Kyber prekeys (same one-time batch) and retires the old ones.
fn rotate_signed_prekey<R: Rng + CryptoRng>(
    v: &Vault,
    identity: &AccountIdentity,
    now: u64,
    rng: &mut R,
) -> Result<(), CoreError> {
    let Some(old) = current_statement(v)? else {
        return Ok(());
    };
    let st = &old.statement;
    let pair = new_signed_pair(
        v,
        identity,
        st.signed_prekey_id.wrapping_add(1).max(1),
        st.kyber_prekey_id.wrapping_add(1).max(1),
        now,
        rng,
    )?;
    v.retire_key("signed_prekey", st.signed_prekey_id, now + PREKEY_GRACE_MS)?;
    v.retire_key("kyber_prekey", st.kyber_prekey_id, now + PREKEY_GRACE_MS)?;
    sign_statement(
        v,
        identity,
        &pair,
        (st.batch_id, st.batch_size, st.batch_root),
        rng,
    )?;
    Ok(())
}

/// Generates one-time prekey batch `batch_id` (and, the first time, the signed and Kyber
/// prekeys), stores the private halves, retires the previous batch and returns what to upload.
pub(crate) fn new_batch<R: Rng + CryptoRng>(
    v: &Vault,
    identity: &AccountIdentity,
    batch_id: u32,
    now: u64,
    rng: &mut R,
) -> Result<(SignedPrekeys, Vec<WirePrekey>), CoreError> {
    let old = current_statement(v)?;
    let pair = match &old {
        Some(o) => SignedPair {
            spk_id: o.statement.signed_prekey_id,
            spk: o.statement.signed_prekey,
            spk_sig: o.signed_prekey_signature,
            kyber_id: o.statement.kyber_prekey_id,
            kyber: o.statement.kyber_prekey.clone(),
            kyber_sig: o.kyber_prekey_signature,
        },
        None => new_signed_pair(v, identity, 1, 1, now, rng)?,
    };
    if let Some(o) = &old {
        // What the relay still holds of the old batch is discarded with this upload; a key it
        // handed out just before may still start a session during the grace period.
        v.retire_key("prekey_batch", o.statement.batch_id, now + PREKEY_GRACE_MS)?;
    }
    let first_id = batch_first_id(batch_id);
    let mut s = v.signal();
    let mut publics = Vec::with_capacity(PREKEY_BATCH as usize);
    for id in first_id..first_id + PREKEY_BATCH {
        let pair = KeyPair::generate(rng);
        tessera_crypto::signal::PreKeyStore::save_pre_key(
            &mut s,
            id.into(),
            &PreKeyRecord::new(id.into(), &pair),
        )
        .run_to_end()?;
        publics.push((id, pair.public_key));
    }
    let batch = OneTimePrekeyBatch::new(publics.clone())?;
    let signed = sign_statement(
        v,
        identity,
        &pair,
        (batch_id, PREKEY_BATCH, batch.root()),
        rng,
    )?;
    v.set_local("prekeys.batch", &batch_id.to_be_bytes())?;
    let wire = publics
        .iter()
        .map(|(id, k)| WirePrekey {
            id: *id,
            public: k.serialize().to_vec(),
        })
        .collect();
    Ok((signed, wire))
}

/// The current statement if it waits to be published (after a rotation while offline).
pub(crate) fn unpublished_statement(v: &Vault) -> Result<Option<SignedPrekeys>, CoreError> {
    if v.local("prekeys.unpublished")?.is_none() {
        return Ok(None);
    }
    current_statement(v)
}

/// Records that the relay accepted the current statement.
pub(crate) fn mark_published(v: &Vault) -> Result<(), CoreError> {
    v.delete_local("prekeys.unpublished")?;
    Ok(())
}

/// The serial of the device certificate the relay last accepted.
pub(crate) fn registered_serial(v: &Vault) -> Result<u32, CoreError> {
    Ok(local_u32(v, "device.registered_serial")?.unwrap_or(0))
}

/// Records that the relay accepted certificate `serial`.
pub(crate) fn set_registered_serial(v: &Vault, serial: u32) -> Result<(), CoreError> {
    v.set_local("device.registered_serial", &serial.to_be_bytes())?;
    Ok(())
}

/// The next one-time prekey batch number.
pub(crate) fn next_batch_id(v: &Vault) -> Result<u32, CoreError> {
    Ok(local_u32(v, "prekeys.batch")?.unwrap_or(0) + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn a_fresh_device_has_nothing_due() {
        let d = due(
            T0 + DEVICE_CERT_LIFETIME_MS,
            (T0 - DAY_MS, T0 + EPOCH_MS + DAY_MS),
            Some(T0),
            T0,
        );
        assert_eq!(d, Due::default());
    }

    #[test]
    fn the_certificate_is_renewed_thirty_days_after_issue_and_when_expired() {
        let end = T0 + DEVICE_CERT_LIFETIME_MS;
        let at = |now| due(end, (now - DAY_MS, now + 8 * DAY_MS), Some(now), now);
        assert!(!at(T0 + 30 * DAY_MS - 1).device_certificate);
        assert!(at(T0 + 30 * DAY_MS).device_certificate);
        // A device offline for a year renews on its next start.
        assert!(at(T0 + 365 * DAY_MS).device_certificate);
    }

    #[test]
    fn epochs_last_seven_days_and_old_long_epochs_end_at_the_next_start() {
        let window = (T0 - DAY_MS, T0 + EPOCH_MS + DAY_MS);
        assert!(!due(u64::MAX, window, Some(T0), T0 + EPOCH_MS - 1).epoch);
        assert!(due(u64::MAX, window, Some(T0), T0 + EPOCH_MS).epoch);
        // An epoch from before rotation (one 46-day certificate): replaced a week in.
        let legacy = (T0 - DAY_MS, T0 + 45 * DAY_MS);
        assert!(!due(u64::MAX, legacy, Some(T0), T0 + DAY_MS).epoch);
        assert!(due(u64::MAX, legacy, Some(T0), T0 + EPOCH_MS).epoch);
        // A clock that moved back before the epoch began.
        assert!(due(u64::MAX, window, Some(T0), T0 - 2 * DAY_MS).epoch);
    }

    #[test]
    fn signed_prekeys_rotate_every_two_days_and_at_once_in_old_vaults() {
        let window = (T0 - DAY_MS, T0 + EPOCH_MS + DAY_MS);
        assert!(!due(u64::MAX, window, Some(T0), T0 + 2 * DAY_MS - 1).signed_prekey);
        assert!(due(u64::MAX, window, Some(T0), T0 + 2 * DAY_MS).signed_prekey);
        assert!(due(u64::MAX, window, None, T0).signed_prekey);
    }

    #[test]
    fn a_contact_certificate_is_refreshed_in_its_last_fifteen_days() {
        let end = T0 + DEVICE_CERT_LIFETIME_MS;
        assert!(!contact_certificate_stale(end, T0 + 29 * DAY_MS));
        assert!(contact_certificate_stale(end, T0 + 30 * DAY_MS));
        assert!(contact_certificate_stale(end, end + 1));
    }

    /// A vault with a device set up as `Engine::create` does, at `T0`.
    fn device(dir: &std::path::Path, rng: &mut rand::rngs::StdRng) -> (Vault, Me) {
        let vault = Vault::create(
            dir,
            b"pw",
            tessera_store::KdfParams::MINIMUM,
            &tessera_store::MemorySecrets::default(),
            None,
            rng,
        )
        .unwrap();
        let identity = AccountIdentity::generate(rng);
        let auth = HybridSigningKey::generate(rng);
        let envelope = EnvelopeKeyPair::generate(rng);
        let cert = issue_certificate(&identity, &auth, &envelope, 1, T0, rng).unwrap();
        let epoch = new_epoch(&identity, T0, rng).unwrap();
        vault.set_local_identity(&identity, 7).unwrap();
        let (ac, am) = auth.to_parts();
        vault.set_local("auth.curve", &ac[..]).unwrap();
        vault.set_local("auth.mldsa", &am[..]).unwrap();
        store_device_keys(&vault, &envelope, &cert, &epoch).unwrap();
        let relay = tessera_proto::RelayAddress {
            host: tessera_proto::RelayHost::Ipv4(std::net::Ipv4Addr::LOCALHOST),
            port: 1,
            pin: tessera_proto::SpkiPin::from_bytes([0; 32]),
        };
        vault.set_setting("relay", &relay.to_string()).unwrap();
        vault.set_setting("name", "Dana").unwrap();
        new_batch(&vault, &identity, 1, T0, rng).unwrap();
        let me = load_me(&vault, Transport::Direct).unwrap();
        (vault, me)
    }

    #[test]
    fn four_hundred_days_of_maintenance_keep_keys_current_and_bounded() {
        use rand::SeedableRng as _;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (vault, mut me) = device(dir.path(), &mut rng);
        let mut serials = vec![me.certificate.fields.serial];
        let mut max = tessera_store::KeyInventory::default();
        for hour in (0..400 * 24).step_by(7) {
            let now = T0 + hour * 3_600_000;
            let done = maintain(&vault, &mut me, now, &mut rng).unwrap();
            // Everything in force is valid now.
            let f = &me.certificate.fields;
            assert!(f.not_before <= now && now + DEVICE_CERT_RENEW_BEFORE_END_MS < f.not_after + 1);
            let e = me.epoch.certificate();
            assert!(e.not_before() <= now && now < e.not_after());
            if done.renewed_certificate {
                serials.push(f.serial);
            }
            if done.prekeys_unpublished {
                mark_published(&vault).unwrap();
            }
            let k = vault.key_inventory().unwrap();
            max.signed_prekeys = max.signed_prekeys.max(k.signed_prekeys);
            max.kyber_prekeys = max.kyber_prekeys.max(k.kyber_prekeys);
            max.retired_envelope_keys = max.retired_envelope_keys.max(k.retired_envelope_keys);
            max.one_time_prekeys = max.one_time_prekeys.max(k.one_time_prekeys);
        }
        // A renewal every 30 days: 13 in 400 days, serials in order.
        assert_eq!(serials, (1..=14).collect::<Vec<_>>());
        // The bounds docs/keys.md states, and keys do get deleted: without deletion 200
        // signed prekeys and 13 retired envelope keys would pile up.
        assert!((15..=17).contains(&max.signed_prekeys), "{max:?}");
        assert!((15..=17).contains(&max.kyber_prekeys), "{max:?}");
        assert!((3..=4).contains(&max.retired_envelope_keys), "{max:?}");
        assert_eq!(max.one_time_prekeys, 100, "{max:?}");
        // The ring opens with the current key and the retired ones, no others.
        assert_eq!(
            vault.key_inventory().unwrap().retired_envelope_keys as usize + 1,
            me.ring.len()
        );
    }

    #[test]
    fn a_device_off_for_a_year_renews_everything_at_once() {
        use rand::SeedableRng as _;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (vault, mut me) = device(dir.path(), &mut rng);
        let later = T0 + 365 * DAY_MS;
        let old_key = me.certificate.fields.envelope_key.clone();
        let done = maintain(&vault, &mut me, later, &mut rng).unwrap();
        assert!(done.renewed_certificate && done.prekeys_unpublished);
        // A peer that knew only the old certificate sealed to its key: it still opens, in
        // memory and after a reload.
        let sealed = tessera_crypto::seal(
            &tessera_crypto::SealRequest {
                recipient: &old_key,
                sender: &me.epoch,
                include_certificate: true,
                sent_at: later,
                content: b"sealed to a year-old key",
            },
            &mut rng,
        )
        .unwrap();
        assert!(me.ring.open(&sealed.bytes, later + 1).is_ok());
        assert_eq!(me.certificate.fields.serial, 2);
        assert!(me.certificate.fields.not_after > later + 44 * DAY_MS);
        assert!(me.epoch.certificate().not_after() > later);
        // Reloading from the vault gives the same keys: the rotation was committed.
        let again = load_me(&vault, Transport::Direct).unwrap();
        assert_eq!(again.certificate, me.certificate);
        assert!(again.ring.open(&sealed.bytes, later + 1).is_ok());
        assert_eq!(
            again.epoch.certificate().to_bytes(),
            me.epoch.certificate().to_bytes()
        );
        // The old envelope key is retired, with its grace counted from now (it had expired).
        assert_eq!(
            vault.retired_until("envelope", 1).unwrap(),
            Some(later + ENVELOPE_KEY_GRACE_MS)
        );
        // Nothing more is due right after.
        let done = maintain(&vault, &mut me, later + 1, &mut rng).unwrap();
        assert!(!done.renewed_certificate);
    }

    #[test]
    fn batches_do_not_overlap() {
        assert_eq!(batch_first_id(1), 1);
        assert_eq!(batch_first_id(2), 101);
        assert_eq!(batch_first_id(0), 1);
    }
}
