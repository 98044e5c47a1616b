//! Device certificates and envelope keys.

use std::fmt;

use libcrux_ml_kem::mlkem1024;
use rand::{CryptoRng, Rng};
use zeroize::{Zeroize as _, Zeroizing};

use crate::hybrid::{HybridPublicKey, HybridSignature};
use crate::identity::{AccountId, AccountIdentity, AccountPublic};
use crate::wire::Reader;
use crate::{CryptoError, HYBRID_PUBLIC_KEY_LEN, HYBRID_SIGNATURE_LEN};

/// ML-KEM-1024 encapsulation key size (FIPS 203).
pub const MLKEM1024_EK_LEN: usize = 1568;
/// ML-KEM-1024 ciphertext size (FIPS 203).
pub const MLKEM1024_CT_LEN: usize = 1568;
const MLKEM1024_DK_LEN: usize = 3168;
const KEY_ID_CONTEXT: &str = "tessera v1 envelope key id";
const DEVICE_CERT_LABEL: &str = "tessera v1 device certificate";
const DEVICE_CERT_VERSION: u8 = 1;

/// The longest validity window a device certificate may state (60 days): a device renews its
/// certificate every 30 days and each one is valid for 45 (`docs/keys.md`), so a stolen or
/// mistaken certificate with a longer window is refused by the relay and by contacts.
pub const MAX_DEVICE_CERT_WINDOW_MS: u64 = 60 * 86_400_000;

/// Identifies an envelope key: the first 16 bytes of its BLAKE3 derive-key hash.
pub type EnvelopeKeyId = [u8; 16];

/// A recipient device's public envelope key: X25519 + ML-KEM-1024.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvelopePublicKey {
    pub(crate) x25519: [u8; 32],
    pub(crate) mlkem: Box<[u8; MLKEM1024_EK_LEN]>,
}

impl fmt::Debug for EnvelopePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EnvelopePublicKey({})",
            crate::hybrid::hex_prefix(&self.key_id())
        )
    }
}

impl EnvelopePublicKey {
    /// The key id carried in envelopes sealed to this key.
    pub fn key_id(&self) -> EnvelopeKeyId {
        let mut h = blake3::Hasher::new_derive_key(KEY_ID_CONTEXT);
        h.update(&self.x25519);
        h.update(self.mlkem.as_ref());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        id
    }

    /// `x25519 (32) || ML-KEM-1024 encapsulation key (1568)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + MLKEM1024_EK_LEN);
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(self.mlkem.as_ref());
        out
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        let x25519 = r.array()?;
        let mlkem: [u8; MLKEM1024_EK_LEN] = r.array()?;
        // FIPS 203 encapsulation-key check (modulus check); refuses keys an attacker crafted.
        if !mlkem1024::validate_public_key(&mlkem1024::MlKem1024PublicKey::from(mlkem)) {
            return Err(CryptoError::BadPublicKey {
                what: "ML-KEM-1024 encapsulation key",
            });
        }
        Ok(Self {
            x25519,
            mlkem: Box::new(mlkem),
        })
    }

    /// Parses the encoding of [`EnvelopePublicKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes, "envelope public key");
        let key = Self::read(&mut r)?;
        r.finish()?;
        Ok(key)
    }
}

/// A device's envelope key pair. Secrets are kept as seeds plus the expanded ML-KEM decapsulation
/// key (to keep decryption fast); all of it is overwritten on drop.
pub struct EnvelopeKeyPair {
    x25519_secret: Zeroizing<[u8; 32]>,
    mlkem_seed: Zeroizing<[u8; 64]>,
    mlkem_dk: Box<[u8; MLKEM1024_DK_LEN]>,
    public: EnvelopePublicKey,
}

impl Drop for EnvelopeKeyPair {
    fn drop(&mut self) {
        self.mlkem_dk.zeroize();
    }
}

impl fmt::Debug for EnvelopeKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeKeyPair({:?}, [redacted])", self.public)
    }
}

impl EnvelopeKeyPair {
    /// A new key pair from the caller's RNG.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut x = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(x.as_mut());
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seeds(x, seed)
    }

    /// Rebuilds a key pair from its stored seeds (X25519 secret, ML-KEM-1024 `d || z`).
    pub fn from_seeds(x25519_secret: Zeroizing<[u8; 32]>, mlkem_seed: Zeroizing<[u8; 64]>) -> Self {
        let secret = x25519_dalek::StaticSecret::from(*x25519_secret);
        let x_public = x25519_dalek::PublicKey::from(&secret);
        let pair = mlkem1024::generate_key_pair(*mlkem_seed);
        let (sk, pk) = pair.into_parts();
        let mut dk = Box::new([0u8; MLKEM1024_DK_LEN]);
        dk.copy_from_slice(sk.as_slice());
        let mut sk_bytes: [u8; MLKEM1024_DK_LEN] = sk.into();
        sk_bytes.zeroize();
        Self {
            x25519_secret,
            mlkem_seed,
            mlkem_dk: dk,
            public: EnvelopePublicKey {
                x25519: *x_public.as_bytes(),
                mlkem: Box::new(*pk.as_slice()),
            },
        }
    }

    /// The seeds to store in the vault.
    pub fn to_seeds(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 64]>) {
        (self.x25519_secret.clone(), self.mlkem_seed.clone())
    }

    /// The public key.
    pub fn public(&self) -> &EnvelopePublicKey {
        &self.public
    }

    pub(crate) fn x25519_secret(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(*self.x25519_secret)
    }

    pub(crate) fn decapsulate(&self, ct: &[u8; MLKEM1024_CT_LEN]) -> Zeroizing<[u8; 32]> {
        let dk = mlkem1024::MlKem1024PrivateKey::from(&*self.mlkem_dk);
        let ss = mlkem1024::decapsulate(&dk, &mlkem1024::MlKem1024Ciphertext::from(ct));
        let mut dk_bytes: [u8; MLKEM1024_DK_LEN] = dk.into();
        dk_bytes.zeroize();
        Zeroizing::new(ss)
    }
}

/// Binds a device's relay-auth key and its current envelope key to the account identity.
///
/// Encoding (`docs/keys.md`): `version (1) || account id (32) || device id (4) || serial (4) ||
/// auth key (2625) || envelope key (1600) || not_before ms (8) || not_after ms (8) ||
/// hybrid signature (4691)`; the signature covers everything before it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeviceCertificate {
    /// The account this device belongs to.
    pub account_id: AccountId,
    /// What the certificate states about the device.
    pub fields: DeviceCertificateFields,
    signature: HybridSignature,
}

/// Encoded size of a [`DeviceCertificate`].
pub const DEVICE_CERTIFICATE_LEN: usize =
    1 + 32 + 4 + 4 + HYBRID_PUBLIC_KEY_LEN + 32 + MLKEM1024_EK_LEN + 8 + 8 + HYBRID_SIGNATURE_LEN;

/// What a device certificate states about its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificateFields {
    /// The device's number within the account.
    pub device_id: u32,
    /// Increases with every envelope-key rotation; the relay keeps the highest.
    pub serial: u32,
    /// The device's relay-auth key.
    pub auth_key: HybridPublicKey,
    /// The device's current envelope key.
    pub envelope_key: EnvelopePublicKey,
    /// Start of validity, ms since the Unix epoch.
    pub not_before: u64,
    /// End of validity, ms since the Unix epoch.
    pub not_after: u64,
}

fn signed_part(account_id: &AccountId, f: &DeviceCertificateFields) -> Vec<u8> {
    let mut out = Vec::with_capacity(DEVICE_CERTIFICATE_LEN);
    out.push(DEVICE_CERT_VERSION);
    out.extend_from_slice(&account_id.0);
    out.extend_from_slice(&f.device_id.to_be_bytes());
    out.extend_from_slice(&f.serial.to_be_bytes());
    out.extend_from_slice(&f.auth_key.to_bytes());
    out.extend_from_slice(&f.envelope_key.to_bytes());
    out.extend_from_slice(&f.not_before.to_be_bytes());
    out.extend_from_slice(&f.not_after.to_be_bytes());
    out
}

impl DeviceCertificate {
    /// Issues a certificate for `fields`, signed by `identity`.
    pub fn issue<R: Rng + CryptoRng>(
        identity: &AccountIdentity,
        fields: DeviceCertificateFields,
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        if fields.not_after <= fields.not_before
            || fields.not_after - fields.not_before > MAX_DEVICE_CERT_WINDOW_MS
        {
            return Err(CryptoError::Malformed {
                what: "device certificate validity window",
            });
        }
        let account_id = identity.public().account_id();
        let signature =
            identity.sign(DEVICE_CERT_LABEL, &signed_part(&account_id, &fields), rng)?;
        Ok(Self {
            account_id,
            fields,
            signature,
        })
    }

    /// The encoding described on the type.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = signed_part(&self.account_id, &self.fields);
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Parses a certificate. This checks the encoding only; call [`DeviceCertificate::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != DEVICE_CERTIFICATE_LEN {
            return Err(CryptoError::BadLength {
                what: "device certificate",
            });
        }
        let mut r = Reader::new(bytes, "device certificate");
        let version = r.u8()?;
        if version != DEVICE_CERT_VERSION {
            return Err(CryptoError::UnknownVersion(version));
        }
        let cert = Self {
            account_id: AccountId(r.array()?),
            fields: DeviceCertificateFields {
                device_id: r.u32()?,
                serial: r.u32()?,
                auth_key: HybridPublicKey::read(&mut r)?,
                envelope_key: EnvelopePublicKey::read(&mut r)?,
                not_before: r.u64()?,
                not_after: r.u64()?,
            },
            signature: HybridSignature::read(&mut r)?,
        };
        r.finish()?;
        Ok(cert)
    }

    /// Checks that `account` issued this certificate (both signatures, matching account id) and
    /// that it is valid at `now_ms`.
    pub fn verify(&self, account: &AccountPublic, now_ms: u64) -> Result<(), CryptoError> {
        self.verify_signature(account)?;
        if now_ms < self.fields.not_before || now_ms > self.fields.not_after {
            return Err(CryptoError::Expired {
                what: "device certificate",
            });
        }
        Ok(())
    }

    /// Every check of [`DeviceCertificate::verify`] except the validity window: the window's
    /// shape and length, the account, the signature. For a peer's newest certificate, which
    /// may have expired while that device was offline (its envelope key still opens envelopes
    /// until the owner's grace after renewal ends; `docs/keys.md`, "Rotation").
    pub fn verify_signature(&self, account: &AccountPublic) -> Result<(), CryptoError> {
        let f = &self.fields;
        if f.not_after <= f.not_before || f.not_after - f.not_before > MAX_DEVICE_CERT_WINDOW_MS {
            return Err(CryptoError::Malformed {
                what: "device certificate validity window",
            });
        }
        if account.account_id() != self.account_id {
            return Err(CryptoError::BadSignature {
                what: "device certificate",
            });
        }
        account.verify(
            DEVICE_CERT_LABEL,
            &signed_part(&self.account_id, &self.fields),
            &self.signature,
            "device certificate",
        )
    }
}
