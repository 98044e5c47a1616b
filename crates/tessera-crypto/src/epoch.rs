//! Epoch keys: per-device, per-epoch X25519 keys that authenticate envelopes to their recipients
//! (sealed sender, `docs/envelope.md` §5).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::device::{EnvelopeKeyId, EnvelopePublicKey};
use crate::hybrid::HybridSignature;
use crate::identity::{AccountId, AccountIdentity, AccountPublic};
use crate::wire::Reader;
use crate::{CryptoError, HYBRID_PUBLIC_KEY_LEN, HYBRID_SIGNATURE_LEN};

const EPOCH_CERT_LABEL: &str = "tessera v1 epoch certificate";
const EPOCH_CERT_VERSION: u8 = 1;

/// The longest validity window an epoch certificate may state (60 days). Epochs last 7 days
/// (`docs/keys.md`); certificates made before rotation existed state 46.
pub const MAX_EPOCH_CERT_WINDOW_MS: u64 = 60 * 86_400_000;

/// Identifies an epoch key (random, chosen by the sending device).
pub type EpochId = [u8; 16];

/// Encoded size of an [`EpochCertificate`].
pub const EPOCH_CERTIFICATE_LEN: usize =
    1 + HYBRID_PUBLIC_KEY_LEN + 4 + 16 + 32 + 8 + 8 + HYBRID_SIGNATURE_LEN;
const PAIR_KEY_CONTEXT: &str = "tessera v1 envelope sender key";
/// Cached pair keys per epoch key or key ring; past this the cache starts over.
const PAIR_CACHE_LIMIT: usize = 4096;

/// Pair keys computed once and reused, for the sender (per recipient key) and for the recipient
/// (per own key and sender epoch). Bounded: past [`PAIR_CACHE_LIMIT`] entries it starts over.
pub(crate) struct PairKeyCache<K>(Mutex<HashMap<K, Zeroizing<[u8; 32]>>>);

impl<K> Default for PairKeyCache<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + std::hash::Hash> PairKeyCache<K> {
    /// The cached key for `id`, or `compute()`'s result, which is then cached.
    pub(crate) fn get_or_compute(
        &self,
        id: K,
        compute: impl FnOnce() -> Result<Zeroizing<[u8; 32]>, CryptoError>,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if let Some(k) = self.0.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(k);
        }
        let key = compute()?;
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= PAIR_CACHE_LIMIT {
                m.clear();
            }
            m.insert(id, key.clone());
        }
        Ok(key)
    }

    /// Drops the entries `keep` rejects.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| keep(k));
        }
    }
}

/// The key that authenticates envelopes from one epoch key to one recipient envelope key:
/// `H("tessera v1 envelope sender key", X25519(epoch, recipient) || epoch_pk || recipient_pk)`.
pub(crate) fn pair_key(
    shared: &[u8; 32],
    epoch_pk: &[u8; 32],
    recipient_pk: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key(PAIR_KEY_CONTEXT);
    h.update(shared);
    h.update(epoch_pk);
    h.update(recipient_pk);
    Zeroizing::new(*h.finalize().as_bytes())
}

/// The identity's statement that an epoch key speaks for one of its devices for a time.
///
/// Encoding: `version (1) || account public (2625) || device id (4) || epoch id (16) ||
/// epoch public key (X25519, 32) || not_before ms (8) || not_after ms (8) ||
/// hybrid signature (4691)`.
/// It carries the account's public keys so that a recipient who has never seen the sender can
/// check it (the account id is their hash).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EpochCertificate {
    account: AccountPublic,
    device_id: u32,
    epoch_id: EpochId,
    epoch_key: [u8; 32],
    not_before: u64,
    not_after: u64,
    signature: HybridSignature,
}

/// An epoch key whose certificate has been checked: what a recipient caches.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedEpoch {
    /// Sender account.
    pub account_id: AccountId,
    /// Sender device.
    pub device_id: u32,
    /// Epoch id.
    pub epoch_id: EpochId,
    /// The sender's X25519 key for this epoch.
    pub key: [u8; 32],
    /// Start of validity (ms).
    pub not_before: u64,
    /// End of validity (ms).
    pub not_after: u64,
}

fn signed_part(
    account: &AccountPublic,
    device_id: u32,
    epoch_id: &EpochId,
    key: &[u8; 32],
    nb: u64,
    na: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(EPOCH_CERTIFICATE_LEN);
    out.push(EPOCH_CERT_VERSION);
    out.extend_from_slice(&account.to_bytes());
    out.extend_from_slice(&device_id.to_be_bytes());
    out.extend_from_slice(epoch_id);
    out.extend_from_slice(key);
    out.extend_from_slice(&nb.to_be_bytes());
    out.extend_from_slice(&na.to_be_bytes());
    out
}

impl EpochCertificate {
    /// Everything the signature covers.
    fn signed_part(&self) -> Vec<u8> {
        signed_part(
            &self.account,
            self.device_id,
            &self.epoch_id,
            &self.epoch_key,
            self.not_before,
            self.not_after,
        )
    }

    /// The encoding described on the type.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_part();
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Parses a certificate (encoding only; call [`EpochCertificate::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != EPOCH_CERTIFICATE_LEN {
            return Err(CryptoError::BadLength {
                what: "epoch certificate",
            });
        }
        let mut r = Reader::new(bytes, "epoch certificate");
        let version = r.u8()?;
        if version != EPOCH_CERT_VERSION {
            return Err(CryptoError::UnknownVersion(version));
        }
        let account = AccountPublic::from_bytes(r.take(HYBRID_PUBLIC_KEY_LEN)?)?;
        let device_id = r.u32()?;
        let epoch_id = r.array()?;
        let epoch_key: [u8; 32] = r.array()?;
        let cert = Self {
            account,
            device_id,
            epoch_id,
            epoch_key,
            not_before: r.u64()?,
            not_after: r.u64()?,
            signature: HybridSignature::read(&mut r)?,
        };
        r.finish()?;
        Ok(cert)
    }

    /// The account that issued it (its keys travel inside the certificate).
    pub fn account(&self) -> &AccountPublic {
        &self.account
    }

    /// Start of the stated validity (ms), not yet verified.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// End of the stated validity (ms), not yet verified.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// Checks both identity signatures, that the window is at most
    /// [`MAX_EPOCH_CERT_WINDOW_MS`] long, and that `at_ms` lies inside it. Envelopes pass their
    /// authenticated send time (`docs/envelope.md` §5), so an envelope sealed inside its epoch
    /// still opens after the epoch ended.
    pub fn verify(&self, at_ms: u64) -> Result<VerifiedEpoch, CryptoError> {
        if self.not_after <= self.not_before
            || self.not_after - self.not_before > MAX_EPOCH_CERT_WINDOW_MS
        {
            return Err(CryptoError::Malformed {
                what: "epoch certificate validity window",
            });
        }
        let data = self.signed_part();
        self.account.verify(
            EPOCH_CERT_LABEL,
            &data,
            &self.signature,
            "epoch certificate",
        )?;
        if at_ms < self.not_before || at_ms > self.not_after {
            return Err(CryptoError::Expired {
                what: "epoch certificate",
            });
        }
        Ok(VerifiedEpoch {
            account_id: self.account.account_id(),
            device_id: self.device_id,
            epoch_id: self.epoch_id,
            key: self.epoch_key,
            not_before: self.not_before,
            not_after: self.not_after,
        })
    }
}

/// A sending device's key for one epoch, with its certificate. It caches the pair key for each
/// recipient envelope key, so the X25519 operation is paid once per recipient per epoch.
pub struct EpochSigningKey {
    secret: Zeroizing<[u8; 32]>,
    certificate: EpochCertificate,
    pairs: PairKeyCache<EnvelopeKeyId>,
}

impl fmt::Debug for EpochSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EpochSigningKey({}, [redacted])",
            crate::hybrid::hex_prefix(&self.certificate.epoch_id)
        )
    }
}

impl EpochSigningKey {
    /// Starts a new epoch for `device_id`, valid from `not_before` to `not_after` (ms).
    pub fn generate<R: Rng + CryptoRng>(
        identity: &AccountIdentity,
        device_id: u32,
        not_before: u64,
        not_after: u64,
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        if not_after <= not_before {
            return Err(CryptoError::Malformed {
                what: "epoch validity",
            });
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        let public =
            *x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).as_bytes();
        let mut epoch_id = [0u8; 16];
        rng.fill_bytes(&mut epoch_id);
        let account = identity.public();
        let data = signed_part(
            &account, device_id, &epoch_id, &public, not_before, not_after,
        );
        let signature = identity.sign(EPOCH_CERT_LABEL, &data, rng)?;
        Ok(Self {
            secret,
            certificate: EpochCertificate {
                account,
                device_id,
                epoch_id,
                epoch_key: public,
                not_before,
                not_after,
                signature,
            },
            pairs: PairKeyCache::default(),
        })
    }

    /// Rebuilds an epoch key from its stored secret and certificate.
    pub fn from_parts(
        secret: Zeroizing<[u8; 32]>,
        certificate: EpochCertificate,
    ) -> Result<Self, CryptoError> {
        let public =
            *x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).as_bytes();
        if public != certificate.epoch_key {
            return Err(CryptoError::Malformed {
                what: "epoch key does not match its certificate",
            });
        }
        Ok(Self {
            secret,
            certificate,
            pairs: PairKeyCache::default(),
        })
    }

    /// The secret to store in the vault.
    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        self.secret.clone()
    }

    /// The certificate.
    pub fn certificate(&self) -> &EpochCertificate {
        &self.certificate
    }

    /// Sender account id.
    pub fn account_id(&self) -> AccountId {
        self.certificate.account.account_id()
    }

    /// Sender device id.
    pub fn device_id(&self) -> u32 {
        self.certificate.device_id
    }

    /// Epoch id.
    pub fn epoch_id(&self) -> EpochId {
        self.certificate.epoch_id
    }

    /// The pair key for `recipient` (computed once, then cached).
    pub(crate) fn pair_key(
        &self,
        recipient: &EnvelopePublicKey,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        self.pairs.get_or_compute(recipient.key_id(), || {
            let shared = x25519_dalek::StaticSecret::from(*self.secret)
                .diffie_hellman(&x25519_dalek::PublicKey::from(recipient.x25519));
            if !shared.was_contributory() {
                return Err(CryptoError::BadPublicKey {
                    what: "recipient X25519 key",
                });
            }
            Ok(pair_key(
                shared.as_bytes(),
                &self.certificate.epoch_key,
                &recipient.x25519,
            ))
        })
    }
}
