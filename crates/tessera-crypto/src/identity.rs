//! Account identities, account ids and safety numbers.

use std::fmt;
use std::str::FromStr;

use libsignal_protocol::{IdentityKey, IdentityKeyPair, PrivateKey};
use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::hybrid::{HybridPublicKey, HybridSignature, HybridSigningKey};
use crate::{CryptoError, HYBRID_PUBLIC_KEY_LEN};

const ACCOUNT_ID_CONTEXT: &str = "tessera v1 account id";
const SAFETY_NUMBER_CONTEXT: &str = "tessera v1 safety number";

/// An account's identity: the libsignal identity key pair plus an ML-DSA-87 key pair, used
/// together as a hybrid signing key. Secret parts zeroize on drop.
#[derive(Clone)]
pub struct AccountIdentity {
    key: HybridSigningKey,
}

impl fmt::Debug for AccountIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountIdentity({})", self.public().account_id())
    }
}

impl AccountIdentity {
    /// A new identity from the caller's RNG.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        Self {
            key: HybridSigningKey::generate(rng),
        }
    }

    /// Rebuilds an identity from its stored secrets (Curve25519 private key, ML-DSA-87 seed).
    pub fn from_parts(
        curve: Zeroizing<[u8; 32]>,
        mldsa_seed: Zeroizing<[u8; 32]>,
    ) -> Result<Self, CryptoError> {
        Ok(Self {
            key: HybridSigningKey::from_parts(curve, mldsa_seed)?,
        })
    }

    /// The secrets to store in the vault.
    pub fn to_parts(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        self.key.to_parts()
    }

    /// The public identity.
    pub fn public(&self) -> AccountPublic {
        AccountPublic {
            key: self.key.public().clone(),
        }
    }

    /// The libsignal identity key pair (for the session stores).
    pub fn signal_identity(&self) -> Result<IdentityKeyPair, CryptoError> {
        let private: PrivateKey = self.key.curve_private()?;
        Ok(IdentityKeyPair::new(
            IdentityKey::new(*self.key.public().curve()),
            private,
        ))
    }

    /// Signs `data` under `label` with both identity keys.
    pub fn sign<R: Rng + CryptoRng>(
        &self,
        label: &str,
        data: &[u8],
        rng: &mut R,
    ) -> Result<HybridSignature, CryptoError> {
        self.key.sign(label, data, rng)
    }

    /// The ML-DSA-87 seed (prekey bundle signatures use the ML-DSA half alone).
    pub(crate) fn signing_key(&self) -> &HybridSigningKey {
        &self.key
    }
}

/// The public half of an account identity.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AccountPublic {
    key: HybridPublicKey,
}

impl AccountPublic {
    /// The libsignal identity key.
    pub fn signal_identity_key(&self) -> IdentityKey {
        IdentityKey::new(*self.key.curve())
    }

    /// The hybrid public key (identity key + ML-DSA-87 verification key).
    pub fn key(&self) -> &HybridPublicKey {
        &self.key
    }

    /// Builds the public identity from its halves.
    pub fn from_key(key: HybridPublicKey) -> Self {
        Self { key }
    }

    /// `identity key (33) || ML-DSA-87 verification key (2592)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_bytes()
    }

    /// Parses the encoding of [`AccountPublic::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != HYBRID_PUBLIC_KEY_LEN {
            return Err(CryptoError::BadLength {
                what: "account public key",
            });
        }
        Ok(Self {
            key: HybridPublicKey::from_bytes(bytes)?,
        })
    }

    /// BLAKE3 of both public keys: the account's name.
    pub fn account_id(&self) -> AccountId {
        AccountId(blake3::derive_key(ACCOUNT_ID_CONTEXT, &self.to_bytes()))
    }

    fn fingerprint(&self) -> [u8; 32] {
        blake3::derive_key(SAFETY_NUMBER_CONTEXT, &self.to_bytes())
    }

    /// Verifies a hybrid signature made with [`AccountIdentity::sign`].
    pub fn verify(
        &self,
        label: &str,
        data: &[u8],
        signature: &HybridSignature,
        what: &'static str,
    ) -> Result<(), CryptoError> {
        self.key.verify(label, data, signature, what)
    }
}

/// An account id: 32 bytes, BLAKE3 of the account's public identity keys.
///
/// Text form: lowercase RFC 4648 base32 without padding, in groups of four separated by `-`
/// (13 groups), e.g. `abcd-efgh-…`. Parsing ignores case, spaces and dashes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub [u8; 32]);

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = Vec::with_capacity(52);
        let mut acc: u32 = 0;
        let mut bits = 0;
        for &b in &self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                chars.push(BASE32[((acc >> bits) & 31) as usize]);
            }
        }
        if bits > 0 {
            chars.push(BASE32[((acc << (5 - bits)) & 31) as usize]);
        }
        for (i, group) in chars.chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Account ids identify people: Debug shows a short prefix only, enough to tell two apart
        // in a test failure but not to look someone up from a log.
        write!(f, "AccountId({}…)", crate::hybrid::hex_prefix(&self.0[..4]))
    }
}

impl FromStr for AccountId {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = CryptoError::Malformed { what: "account id" };
        let mut out = Vec::with_capacity(32);
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut count = 0;
        for c in s.chars().filter(|c| *c != '-' && !c.is_whitespace()) {
            let c = c.to_ascii_lowercase();
            let v = BASE32
                .iter()
                .position(|&b| char::from(b) == c)
                .ok_or(bad.clone())?;
            acc = (acc << 5) | v as u32;
            bits += 5;
            count += 1;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        // 52 characters carry 260 bits: 256 of data and 4 that must be zero.
        if count != 52 || acc != 0 {
            return Err(bad);
        }
        out.try_into().map(AccountId).map_err(|_| bad)
    }
}

/// The safety number of two identities: the same 60 digits on both sides.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    low: [u8; 32],
    high: [u8; 32],
}

impl SafetyNumber {
    /// The safety number between `a` and `b` (order does not matter).
    pub fn new(a: &AccountPublic, b: &AccountPublic) -> Self {
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        let (low, high) = if fa <= fb { (fa, fb) } else { (fb, fa) };
        Self { low, high }
    }

    /// 60 digits in 12 groups of 5, separated by spaces.
    pub fn digits(&self) -> String {
        let mut groups = Vec::with_capacity(12);
        for fp in [&self.low, &self.high] {
            for chunk in fp[..30].chunks(5) {
                let mut v: u64 = 0;
                for &b in chunk {
                    v = (v << 8) | u64::from(b);
                }
                groups.push(format!("{:05}", v % 100_000));
            }
        }
        groups.join(" ")
    }

    /// The QR code payload: `0x01 || low fingerprint || high fingerprint` (65 bytes).
    pub fn qr_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        out.push(1);
        out.extend_from_slice(&self.low);
        out.extend_from_slice(&self.high);
        out
    }

    /// Whether a scanned QR payload matches this safety number.
    pub fn matches_qr(&self, scanned: &[u8]) -> bool {
        // Both values are public; constant time is not needed, only an exact match.
        scanned == self.qr_payload().as_slice()
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({})", self.digits())
    }
}
