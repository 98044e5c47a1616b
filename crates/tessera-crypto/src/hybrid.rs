//! Hybrid signatures: XEdDSA over Curve25519 **and** ML-DSA-87; valid only if both verify.

use std::fmt;

use libcrux_ml_dsa::ml_dsa_87;
use libsignal_protocol::{KeyPair, PrivateKey, PublicKey};
use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::wire::{Reader, labelled};

/// Size of an encoded [`HybridPublicKey`]: 33 (Curve25519, libsignal encoding) + 2592 (ML-DSA-87).
pub const HYBRID_PUBLIC_KEY_LEN: usize = 33 + MLDSA87_VK_LEN;
/// Size of an encoded [`HybridSignature`]: 64 (XEdDSA) + 4627 (ML-DSA-87).
pub const HYBRID_SIGNATURE_LEN: usize = 64 + MLDSA87_SIG_LEN;
/// ML-DSA-87 verification key size (FIPS 204).
pub const MLDSA87_VK_LEN: usize = 2592;
/// ML-DSA-87 signature size (FIPS 204).
pub const MLDSA87_SIG_LEN: usize = 4627;

/// The secret half of a hybrid key: a Curve25519 private key and an ML-DSA-87 key-generation
/// seed. Both zeroize on drop; the expanded ML-DSA signing key is rebuilt per signature and
/// dropped at once.
#[derive(Clone)]
pub struct HybridSigningKey {
    curve: Zeroizing<[u8; 32]>,
    mldsa_seed: Zeroizing<[u8; 32]>,
    public: HybridPublicKey,
}

impl fmt::Debug for HybridSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HybridSigningKey([redacted])")
    }
}

/// The public half: a Curve25519 public key and an ML-DSA-87 verification key.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridPublicKey {
    curve: PublicKey,
    mldsa: Box<[u8; MLDSA87_VK_LEN]>,
}

impl fmt::Debug for HybridPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = blake3::hash(&self.to_bytes());
        write!(f, "HybridPublicKey({})", hex_prefix(fp.as_bytes()))
    }
}

pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A hybrid signature: 64 bytes of XEdDSA followed by 4627 bytes of ML-DSA-87.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridSignature {
    classical: [u8; 64],
    mldsa: Box<[u8; MLDSA87_SIG_LEN]>,
}

impl fmt::Debug for HybridSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HybridSignature(..)")
    }
}

impl HybridSigningKey {
    /// A new key pair from the caller's RNG.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let pair = KeyPair::generate(rng);
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::build(curve_secret(&pair.private_key), pair.public_key, seed)
    }

    /// Rebuilds a key from its stored secret parts (Curve25519 private key, ML-DSA-87 seed).
    pub fn from_parts(
        curve: Zeroizing<[u8; 32]>,
        mldsa_seed: Zeroizing<[u8; 32]>,
    ) -> Result<Self, CryptoError> {
        let private =
            PrivateKey::deserialize(curve.as_ref()).map_err(|_| CryptoError::Malformed {
                what: "hybrid private key",
            })?;
        let curve_public = private.public_key().map_err(|_| CryptoError::Malformed {
            what: "hybrid private key",
        })?;
        Ok(Self::build(curve, curve_public, mldsa_seed))
    }

    fn build(
        curve: Zeroizing<[u8; 32]>,
        curve_public: PublicKey,
        mldsa_seed: Zeroizing<[u8; 32]>,
    ) -> Self {
        let pair = ml_dsa_87::generate_key_pair(*mldsa_seed);
        let mut signing_key = pair.signing_key;
        zeroize::Zeroize::zeroize(signing_key.as_mut_slice());
        let public = HybridPublicKey {
            curve: curve_public,
            mldsa: Box::new(*pair.verification_key.as_ref()),
        };
        Self {
            curve,
            mldsa_seed,
            public,
        }
    }

    /// The secret parts, for storage in the vault.
    pub fn to_parts(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        (self.curve.clone(), self.mldsa_seed.clone())
    }

    /// The public half.
    pub fn public(&self) -> &HybridPublicKey {
        &self.public
    }

    /// The Curve25519 private key as libsignal's type.
    pub(crate) fn curve_private(&self) -> Result<PrivateKey, CryptoError> {
        PrivateKey::deserialize(self.curve.as_ref()).map_err(|_| CryptoError::Signing)
    }

    /// Signs `data` under `label` with both algorithms.
    pub fn sign<R: Rng + CryptoRng>(
        &self,
        label: &str,
        data: &[u8],
        rng: &mut R,
    ) -> Result<HybridSignature, CryptoError> {
        let message = labelled(label, data);
        let classical = self
            .curve_private()?
            .calculate_signature(&message, rng)
            .map_err(|_| CryptoError::Signing)?;
        let classical: [u8; 64] = (*classical).try_into().map_err(|_| CryptoError::Signing)?;
        let mldsa = mldsa_sign(&self.mldsa_seed, label, &message, rng)?;
        Ok(HybridSignature { classical, mldsa })
    }
}

/// ML-DSA-87 signature with `label` as the FIPS 204 context string (hedged: fresh randomness).
pub(crate) fn mldsa_sign<R: Rng + CryptoRng>(
    seed: &Zeroizing<[u8; 32]>,
    label: &str,
    message: &[u8],
    rng: &mut R,
) -> Result<Box<[u8; MLDSA87_SIG_LEN]>, CryptoError> {
    let pair = ml_dsa_87::generate_key_pair(**seed);
    let mut randomness = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(randomness.as_mut());
    let signature = ml_dsa_87::sign(&pair.signing_key, message, label.as_bytes(), *randomness)
        .map_err(|_| CryptoError::Signing)?;
    // The expanded signing key lives in `pair`; overwrite it before it is dropped.
    let mut signing_key = pair.signing_key;
    zeroize::Zeroize::zeroize(signing_key.as_mut_slice());
    Ok(Box::new(*signature.as_ref()))
}

/// The 32 secret bytes of a libsignal Curve25519 private key, in zeroizing storage.
pub(crate) fn curve_secret(private: &PrivateKey) -> Zeroizing<[u8; 32]> {
    let bytes = Zeroizing::new(private.serialize());
    let mut out = Zeroizing::new([0u8; 32]);
    // libsignal's Curve25519 private keys are always 32 bytes.
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

impl HybridPublicKey {
    /// The Curve25519 half.
    pub fn curve(&self) -> &PublicKey {
        &self.curve
    }

    /// The ML-DSA-87 verification key.
    pub fn mldsa(&self) -> &[u8; MLDSA87_VK_LEN] {
        &self.mldsa
    }

    /// Builds a public key from its halves (e.g. an identity key and its ML-DSA key).
    pub fn from_halves(curve: PublicKey, mldsa: [u8; MLDSA87_VK_LEN]) -> Self {
        Self {
            curve,
            mldsa: Box::new(mldsa),
        }
    }

    /// `curve (33) || mldsa (2592)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HYBRID_PUBLIC_KEY_LEN);
        out.extend_from_slice(&self.curve.serialize());
        out.extend_from_slice(self.mldsa.as_ref());
        out
    }

    /// Parses `curve (33) || mldsa (2592)` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes, "hybrid public key");
        let key = Self::read(&mut r)?;
        r.finish()?;
        Ok(key)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        let curve = PublicKey::deserialize(r.take(33)?).map_err(|_| CryptoError::BadPublicKey {
            what: "hybrid public key",
        })?;
        Ok(Self {
            curve,
            mldsa: Box::new(r.array()?),
        })
    }

    /// Verifies `signature` over `data` under `label`; `Ok` only if both halves verify.
    pub fn verify(
        &self,
        label: &str,
        data: &[u8],
        signature: &HybridSignature,
        what: &'static str,
    ) -> Result<(), CryptoError> {
        let message = labelled(label, data);
        let classical_ok = self.curve.verify_signature(&message, &signature.classical);
        let pq_ok = mldsa_verify(&self.mldsa, label, &message, &signature.mldsa);
        if classical_ok && pq_ok {
            Ok(())
        } else {
            Err(CryptoError::BadSignature { what })
        }
    }
}

pub(crate) fn mldsa_verify(
    vk: &[u8; MLDSA87_VK_LEN],
    label: &str,
    message: &[u8],
    sig: &[u8; MLDSA87_SIG_LEN],
) -> bool {
    let vk = ml_dsa_87::MLDSA87VerificationKey::new(*vk);
    let sig = ml_dsa_87::MLDSA87Signature::new(*sig);
    ml_dsa_87::verify(&vk, message, label.as_bytes(), &sig).is_ok()
}

impl HybridSignature {
    /// `classical (64) || mldsa (4627)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HYBRID_SIGNATURE_LEN);
        out.extend_from_slice(&self.classical);
        out.extend_from_slice(self.mldsa.as_ref());
        out
    }

    /// Parses exactly [`HYBRID_SIGNATURE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes, "hybrid signature");
        let sig = Self::read(&mut r)?;
        r.finish()?;
        Ok(sig)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        Ok(Self {
            classical: r.array()?,
            mldsa: Box::new(r.array()?),
        })
    }

    /// Replaces the classical half (tests use this to show both halves are required).
    #[doc(hidden)]
    pub fn with_classical(mut self, classical: [u8; 64]) -> Self {
        self.classical = classical;
        self
    }

    /// Replaces the ML-DSA half (tests use this to show both halves are required).
    #[doc(hidden)]
    pub fn with_mldsa(mut self, mldsa: [u8; MLDSA87_SIG_LEN]) -> Self {
        self.mldsa = Box::new(mldsa);
        self
    }

    /// The classical half.
    pub fn classical(&self) -> &[u8; 64] {
        &self.classical
    }

    /// The ML-DSA-87 half.
    pub fn mldsa(&self) -> &[u8; MLDSA87_SIG_LEN] {
        &self.mldsa
    }
}
