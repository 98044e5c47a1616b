//! ML-DSA-87 signatures over published prekeys, so that an attacker with a quantum computer (who
//! could forge the identity key's XEdDSA signatures) still cannot substitute a device's prekeys.
//!
//! The device publishes a [`PrekeyStatement`]: its signed prekey, its Kyber prekey and the BLAKE3
//! Merkle root of a batch of one-time prekeys, signed once with ML-DSA-87. The relay hands out
//! each one-time prekey with its Merkle path ([`OneTimePrekeyProof`]), so one signature covers the
//! whole batch while each prekey is still handed out alone.

use libsignal_protocol::{PreKeyBundle, PublicKey, kem};
use rand::{CryptoRng, Rng};

use crate::CryptoError;
use crate::hybrid::{MLDSA87_SIG_LEN, mldsa_sign, mldsa_verify};
use crate::identity::{AccountId, AccountIdentity, AccountPublic};
use crate::wire::{Reader, labelled};

const PREKEYS_LABEL: &str = "tessera v1 prekeys";
const LEAF_CONTEXT: &str = "tessera v1 prekey leaf";
const NODE_CONTEXT: &str = "tessera v1 prekey node";
/// Largest one-time-prekey batch.
pub const MAX_BATCH: usize = 1024;

/// What a device signs when it publishes prekeys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyStatement {
    /// Owner account.
    pub account_id: AccountId,
    /// Owner device.
    pub device_id: u32,
    /// libsignal registration id.
    pub registration_id: u32,
    /// Signed prekey id.
    pub signed_prekey_id: u32,
    /// Signed prekey (Curve25519).
    pub signed_prekey: PublicKey,
    /// Kyber prekey id.
    pub kyber_prekey_id: u32,
    /// Kyber prekey (ML-KEM-1024, libsignal encoding).
    pub kyber_prekey: Vec<u8>,
    /// One-time-prekey batch number.
    pub batch_id: u32,
    /// Number of one-time prekeys in the batch (0 if none).
    pub batch_size: u32,
    /// Merkle root of the batch (all zero if none).
    pub batch_root: [u8; 32],
}

impl PrekeyStatement {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.kyber_prekey.len());
        out.extend_from_slice(&self.account_id.0);
        for v in [self.device_id, self.registration_id, self.signed_prekey_id] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.signed_prekey.serialize());
        out.extend_from_slice(&self.kyber_prekey_id.to_be_bytes());
        out.extend_from_slice(&(self.kyber_prekey.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.kyber_prekey);
        out.extend_from_slice(&self.batch_id.to_be_bytes());
        out.extend_from_slice(&self.batch_size.to_be_bytes());
        out.extend_from_slice(&self.batch_root);
        out
    }

    /// Signs the statement with the identity's ML-DSA-87 key.
    pub fn sign<R: Rng + CryptoRng>(
        &self,
        identity: &AccountIdentity,
        rng: &mut R,
    ) -> Result<PrekeySignature, CryptoError> {
        if identity.public().account_id() != self.account_id {
            return Err(CryptoError::Malformed {
                what: "prekey statement account",
            });
        }
        let (_, seed) = identity.signing_key().to_parts();
        let sig = mldsa_sign(
            &seed,
            PREKEYS_LABEL,
            &labelled(PREKEYS_LABEL, &self.encode()),
            rng,
        )?;
        Ok(PrekeySignature(sig))
    }

    /// Verifies the statement's signature, and the one-time prekey's place in the batch if one
    /// is given.
    pub fn verify(
        &self,
        account: &AccountPublic,
        signature: &PrekeySignature,
        one_time: Option<&OneTimePrekeyProof>,
    ) -> Result<(), CryptoError> {
        let bad = CryptoError::BadSignature {
            what: "prekey bundle",
        };
        if account.account_id() != self.account_id {
            return Err(bad);
        }
        if !mldsa_verify(
            account.key().mldsa(),
            PREKEYS_LABEL,
            &labelled(PREKEYS_LABEL, &self.encode()),
            &signature.0,
        ) {
            return Err(bad);
        }
        if let Some(proof) = one_time
            && proof.root(self.batch_size)? != self.batch_root
        {
            return Err(bad);
        }
        Ok(())
    }

    /// Checks that a libsignal bundle carries exactly the keys this statement signed.
    pub fn matches_bundle(
        &self,
        bundle: &PreKeyBundle,
        one_time: Option<&OneTimePrekeyProof>,
    ) -> Result<(), CryptoError> {
        let bad = CryptoError::BadSignature {
            what: "prekey bundle (keys differ from the signed statement)",
        };
        let same = |ok: Result<bool, libsignal_protocol::SignalProtocolError>| ok.unwrap_or(false);
        let checks = [
            same(bundle.registration_id().map(|v| v == self.registration_id)),
            same(bundle.device_id().map(|v| u32::from(v) == self.device_id)),
            same(
                bundle
                    .signed_pre_key_id()
                    .map(|v| u32::from(v) == self.signed_prekey_id),
            ),
            same(
                bundle
                    .signed_pre_key_public()
                    .map(|v| v == self.signed_prekey),
            ),
            same(
                bundle
                    .kyber_pre_key_id()
                    .map(|v| u32::from(v) == self.kyber_prekey_id),
            ),
            same(
                bundle
                    .kyber_pre_key_public()
                    .map(|v| *v.serialize() == *self.kyber_prekey),
            ),
        ];
        let one_time_ok = match (bundle.pre_key_id(), bundle.pre_key_public(), one_time) {
            (Ok(None), Ok(None), None) => true,
            (Ok(Some(id)), Ok(Some(key)), Some(p)) => {
                u32::from(id) == p.prekey_id && key == p.prekey
            }
            _ => false,
        };
        if checks.iter().all(|c| *c) && one_time_ok {
            Ok(())
        } else {
            Err(bad)
        }
    }
}

/// An ML-DSA-87 signature over a [`PrekeyStatement`] (4627 bytes).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PrekeySignature(Box<[u8; MLDSA87_SIG_LEN]>);

impl PrekeySignature {
    /// The raw signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Parses exactly 4627 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes, "prekey signature");
        let sig = r.array()?;
        r.finish()?;
        Ok(Self(Box::new(sig)))
    }
}

fn leaf(prekey_id: u32, prekey: &PublicKey) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(LEAF_CONTEXT);
    h.update(&prekey_id.to_be_bytes());
    h.update(&prekey.serialize());
    *h.finalize().as_bytes()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// A batch of one-time prekeys as a Merkle tree (an odd node at the end of a level moves up
/// unchanged).
#[derive(Clone, Debug)]
pub struct OneTimePrekeyBatch {
    prekeys: Vec<(u32, PublicKey)>,
    levels: Vec<Vec<[u8; 32]>>,
}

impl OneTimePrekeyBatch {
    /// Builds the tree over `prekeys` (1 to [`MAX_BATCH`] of them).
    pub fn new(prekeys: Vec<(u32, PublicKey)>) -> Result<Self, CryptoError> {
        if prekeys.is_empty() || prekeys.len() > MAX_BATCH {
            return Err(CryptoError::BadLength {
                what: "one-time prekey batch",
            });
        }
        let mut levels = vec![
            prekeys
                .iter()
                .map(|(id, k)| leaf(*id, k))
                .collect::<Vec<_>>(),
        ];
        while levels.last().map(Vec::len).unwrap_or(1) > 1 {
            let prev = levels.last().map(Vec::as_slice).unwrap_or(&[]);
            let next = prev
                .chunks(2)
                .map(|pair| {
                    if let [l, r] = pair {
                        node(l, r)
                    } else {
                        pair[0]
                    }
                })
                .collect();
            levels.push(next);
        }
        Ok(Self { prekeys, levels })
    }

    /// The Merkle root to put in the [`PrekeyStatement`].
    pub fn root(&self) -> [u8; 32] {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// Number of prekeys.
    pub fn len(&self) -> usize {
        self.prekeys.len()
    }

    /// Whether the batch is empty (never: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.prekeys.is_empty()
    }

    /// The proof for the prekey at `index`, for the relay to hand out with it.
    pub fn proof(&self, index: usize) -> Option<OneTimePrekeyProof> {
        let (prekey_id, prekey) = *self.prekeys.get(index)?;
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            i /= 2;
        }
        Some(OneTimePrekeyProof {
            prekey_id,
            prekey,
            index: index as u32,
            path,
        })
    }
}

/// One one-time prekey with its Merkle path to the signed batch root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimePrekeyProof {
    /// Prekey id.
    pub prekey_id: u32,
    /// The prekey.
    pub prekey: PublicKey,
    /// Its position in the batch.
    pub index: u32,
    /// Sibling hashes from the leaf up.
    pub path: Vec<[u8; 32]>,
}

impl OneTimePrekeyProof {
    /// Recomputes the batch root for a batch of `batch_size` prekeys.
    pub fn root(&self, batch_size: u32) -> Result<[u8; 32], CryptoError> {
        let bad = CryptoError::BadSignature {
            what: "one-time prekey proof",
        };
        let (mut i, mut len) = (self.index as usize, batch_size as usize);
        if i >= len || len > MAX_BATCH {
            return Err(bad);
        }
        let mut hash = leaf(self.prekey_id, &self.prekey);
        let mut path = self.path.iter();
        while len > 1 {
            let sibling = i ^ 1;
            if sibling < len {
                let s = path.next().ok_or(bad.clone())?;
                hash = if i % 2 == 0 {
                    node(&hash, s)
                } else {
                    node(s, &hash)
                };
            }
            i /= 2;
            len = len.div_ceil(2);
        }
        if path.next().is_some() {
            return Err(bad);
        }
        Ok(hash)
    }
}

/// Builds the libsignal bundle a session starts from, after checking the ML-DSA-87 statement.
#[allow(clippy::too_many_arguments)]
pub fn verified_bundle(
    account: &AccountPublic,
    statement: &PrekeyStatement,
    signature: &PrekeySignature,
    signed_prekey_signature: &[u8],
    kyber_prekey_signature: &[u8],
    one_time: Option<&OneTimePrekeyProof>,
) -> Result<PreKeyBundle, CryptoError> {
    statement.verify(account, signature, one_time)?;
    let kyber = kem::PublicKey::deserialize(&statement.kyber_prekey).map_err(|_| {
        CryptoError::BadPublicKey {
            what: "Kyber prekey",
        }
    })?;
    let bundle = PreKeyBundle::new(
        statement.registration_id,
        statement
            .device_id
            .try_into()
            .map_err(|_| CryptoError::Malformed { what: "device id" })?,
        one_time.map(|p| (p.prekey_id.into(), p.prekey)),
        statement.signed_prekey_id.into(),
        statement.signed_prekey,
        signed_prekey_signature.to_vec(),
        statement.kyber_prekey_id.into(),
        kyber,
        kyber_prekey_signature.to_vec(),
        account.signal_identity_key(),
    )
    .map_err(|_| CryptoError::Malformed {
        what: "prekey bundle",
    })?;
    statement.matches_bundle(&bundle, one_time)?;
    Ok(bundle)
}

const SIGNED_PREKEYS_VERSION: u8 = 1;
/// Length of a libsignal XEdDSA signature over a prekey.
pub const SIGNAL_SIGNATURE_LEN: usize = 64;
/// Largest Kyber prekey encoding accepted when parsing (ML-KEM-1024 is 1569 bytes).
const MAX_KYBER_PREKEY_LEN: usize = 4096;

/// What a device uploads to the relay and the relay hands to peers: the statement, its
/// ML-DSA-87 signature and libsignal's XEdDSA signatures over the signed and Kyber prekeys.
///
/// Encoding (`docs/keys.md` §prekeys): `version (1) || account id (32) || device id (4) ||
/// registration id (4) || signed prekey id (4) || signed prekey (33) || kyber prekey id (4) ||
/// kyber len (4) || kyber prekey || batch id (4) || batch size (4) || batch root (32) ||
/// ML-DSA-87 signature (4627) || signed prekey signature (64) || kyber prekey signature (64)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPrekeys {
    /// The statement.
    pub statement: PrekeyStatement,
    /// ML-DSA-87 over the statement.
    pub signature: PrekeySignature,
    /// libsignal's signature over the signed prekey.
    pub signed_prekey_signature: [u8; SIGNAL_SIGNATURE_LEN],
    /// libsignal's signature over the Kyber prekey.
    pub kyber_prekey_signature: [u8; SIGNAL_SIGNATURE_LEN],
}

impl SignedPrekeys {
    /// The encoding described on the type.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![SIGNED_PREKEYS_VERSION];
        out.extend_from_slice(&self.statement.encode());
        out.extend_from_slice(&self.signature.0[..]);
        out.extend_from_slice(&self.signed_prekey_signature);
        out.extend_from_slice(&self.kyber_prekey_signature);
        out
    }

    /// Parses the encoding. Checks the format only; call [`SignedPrekeys::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let what = "signed prekeys";
        let mut r = Reader::new(bytes, what);
        let version = r.u8()?;
        if version != SIGNED_PREKEYS_VERSION {
            return Err(CryptoError::UnknownVersion(version));
        }
        let account_id = AccountId(r.array()?);
        let device_id = r.u32()?;
        let registration_id = r.u32()?;
        let signed_prekey_id = r.u32()?;
        let spk: [u8; 33] = r.array()?;
        let signed_prekey =
            PublicKey::deserialize(&spk).map_err(|_| CryptoError::BadPublicKey {
                what: "signed prekey",
            })?;
        let kyber_prekey_id = r.u32()?;
        let kyber_len = r.u32()? as usize;
        if kyber_len > MAX_KYBER_PREKEY_LEN {
            return Err(CryptoError::BadLength { what });
        }
        let kyber_prekey = r.take(kyber_len)?.to_vec();
        let statement = PrekeyStatement {
            account_id,
            device_id,
            registration_id,
            signed_prekey_id,
            signed_prekey,
            kyber_prekey_id,
            kyber_prekey,
            batch_id: r.u32()?,
            batch_size: r.u32()?,
            batch_root: r.array()?,
        };
        if statement.batch_size as usize > MAX_BATCH {
            return Err(CryptoError::BadLength { what });
        }
        let signature = PrekeySignature(Box::new(r.array()?));
        let signed_prekey_signature = r.array()?;
        let kyber_prekey_signature = r.array()?;
        r.finish()?;
        Ok(Self {
            statement,
            signature,
            signed_prekey_signature,
            kyber_prekey_signature,
        })
    }

    /// Checks every signature: ML-DSA-87 over the statement (and `one_time`'s Merkle path, if
    /// given) and the account's XEdDSA signatures over the signed and Kyber prekeys.
    pub fn verify(
        &self,
        account: &AccountPublic,
        one_time: Option<&OneTimePrekeyProof>,
    ) -> Result<(), CryptoError> {
        self.statement.verify(account, &self.signature, one_time)?;
        let identity = account.signal_identity_key();
        let key = identity.public_key();
        let spk_ok = key.verify_signature(
            &self.statement.signed_prekey.serialize(),
            &self.signed_prekey_signature,
        );
        let kyber_ok =
            key.verify_signature(&self.statement.kyber_prekey, &self.kyber_prekey_signature);
        if spk_ok && kyber_ok {
            Ok(())
        } else {
            Err(CryptoError::BadSignature {
                what: "prekey bundle",
            })
        }
    }

    /// Verifies everything and builds the libsignal bundle a session starts from.
    pub fn bundle(
        &self,
        account: &AccountPublic,
        one_time: Option<&OneTimePrekeyProof>,
    ) -> Result<PreKeyBundle, CryptoError> {
        self.verify(account, one_time)?;
        verified_bundle(
            account,
            &self.statement,
            &self.signature,
            &self.signed_prekey_signature,
            &self.kyber_prekey_signature,
            one_time,
        )
    }
}

impl OneTimePrekeyProof {
    /// The Merkle path as it travels in a relay `Bundle` frame: the hashes concatenated.
    pub fn path_bytes(&self) -> Vec<u8> {
        self.path.concat()
    }

    /// Rebuilds a proof from a relay `Bundle` frame's fields.
    pub fn from_wire(
        prekey_id: u32,
        public: &[u8],
        index: u32,
        path: &[u8],
    ) -> Result<Self, CryptoError> {
        let prekey = PublicKey::deserialize(public).map_err(|_| CryptoError::BadPublicKey {
            what: "one-time prekey",
        })?;
        if !path.len().is_multiple_of(32) || path.len() / 32 > 11 {
            return Err(CryptoError::BadLength {
                what: "one-time prekey proof",
            });
        }
        let path = path
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self {
            prekey_id,
            prekey,
            index,
            path,
        })
    }
}
