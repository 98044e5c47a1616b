//! Envelope v2: links. A *link* is the ML-KEM-1024 secret one sending epoch shares with one
//! recipient envelope key. Envelopes carry the KEM ciphertext and the epoch certificate (*full*
//! envelopes, self-contained) until the recipient acknowledges the link; then only its 16-byte
//! id (*short* envelopes, ~9 KiB smaller). The byte-exact format is `docs/envelope.md`.

use std::collections::HashMap;
use std::fmt;

use libcrux_ml_kem::mlkem1024;
use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::device::{EnvelopeKeyId, EnvelopePublicKey, MLKEM1024_CT_LEN};
use crate::envelope::{
    EnvelopeId, EnvelopeKeyRing, MAX_CONTENT_LEN, MAX_ENVELOPE_AGE_MS, OpenedEnvelope,
    SealedEnvelope, TAG_LEN, VerifiedEnvelope, open_body, parse_body,
};
use crate::epoch::{EpochCertificate, EpochId, EpochSigningKey, VerifiedEpoch};
use crate::identity::AccountId;
use crate::wire::Reader;

/// Identifies a link: `H("tessera v2 envelope link id", key_id || ct_m)[0..16]`.
pub type LinkId = [u8; 16];

/// The version byte of envelopes this build writes.
pub const ENVELOPE_V2: u8 = 2;
const KIND_FULL: u8 = 1;
const KIND_SHORT: u8 = 2;
/// Clear header of a full envelope: version, kind, id, key id, the link's X25519 key and KEM
/// ciphertext.
pub const FULL_HEADER_LEN: usize = 2 + 16 + 16 + 32 + MLKEM1024_CT_LEN;
/// Clear header of a short envelope: version, kind, id, key id, link id.
pub const SHORT_HEADER_LEN: usize = 2 + 16 + 16 + 16;
/// The smallest padded plaintext (§4).
pub const MIN_PADDED_LEN_V2: usize = 256;
/// Above this, padded sizes are multiples of it; up to it, powers of two (§4).
pub const PADDING_STEP_V2: usize = 16 * 1024;
/// The largest padded plaintext: the largest content with a certificate and an ack (§4).
pub const MAX_PADDED_LEN_V2: usize = 9 * PADDING_STEP_V2;
/// The largest v2 envelope.
pub const MAX_ENVELOPE_LEN_V2: usize = FULL_HEADER_LEN + MAX_PADDED_LEN_V2 + TAG_LEN;
/// The smallest v2 envelope.
pub const MIN_ENVELOPE_LEN_V2: usize = SHORT_HEADER_LEN + MIN_PADDED_LEN_V2 + TAG_LEN;

const LINK_ID_CONTEXT: &str = "tessera v2 envelope link id";
const LINK_SECRET_CONTEXT: &str = "tessera v2 envelope link secret";
const TRANSCRIPT_CONTEXT: &str = "tessera v2 envelope transcript";
const KEYS_CONTEXT: &str = "tessera v2 envelope keys";
pub(crate) const SENDER_CONTEXT_V2: &str = "tessera v2 envelope sender";
const OUTBOUND_VERSION: u8 = 2;
const INBOUND_VERSION: u8 = 1;
const OUTBOUND_LEN: usize = 1 + 16 + 16 + 32 + MLKEM1024_CT_LEN + 32 + 1;
const INBOUND_LEN: usize = 1 + 16 + 16 + 32 + 32 + 4 + 16 + 32 + 8 + 8;

/// The padded plaintext length for an unpadded length `u` (§4): at least 256 bytes, then the
/// next power of two up to 16 KiB, then the next multiple of 16 KiB.
pub fn padded_len_v2(u: usize) -> usize {
    if u <= MIN_PADDED_LEN_V2 {
        MIN_PADDED_LEN_V2
    } else if u <= PADDING_STEP_V2 {
        u.next_power_of_two()
    } else {
        u.div_ceil(PADDING_STEP_V2) * PADDING_STEP_V2
    }
}

fn link_id(key_id: &EnvelopeKeyId, lpk: &[u8; 32], ct: &[u8]) -> LinkId {
    let mut h = blake3::Hasher::new_derive_key(LINK_ID_CONTEXT);
    h.update(key_id);
    h.update(lpk);
    h.update(ct);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

fn transcript_hash(header: &[u8], recipient: &EnvelopePublicKey) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(TRANSCRIPT_CONTEXT);
    h.update(header);
    h.update(&recipient.x25519);
    h.update(recipient.mlkem.as_ref());
    *h.finalize().as_bytes()
}

/// `ls = H("tessera v2 envelope link secret", ss_m || ss_x || key_id || lpk || ct_m)` (§1).
fn link_secret(
    ss_m: &[u8; 32],
    ss_x: &[u8; 32],
    key_id: &EnvelopeKeyId,
    lpk: &[u8; 32],
    ct: &[u8],
) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key(LINK_SECRET_CONTEXT);
    h.update(ss_m);
    h.update(ss_x);
    h.update(key_id);
    h.update(lpk);
    h.update(ct);
    Zeroizing::new(*h.finalize().as_bytes())
}

fn derive_keys(link_secret: &[u8; 32], th: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; 24]) {
    let mut h = blake3::Hasher::new_derive_key(KEYS_CONTEXT);
    h.update(link_secret);
    h.update(th);
    let mut okm = Zeroizing::new([0u8; 56]);
    h.finalize_xof().fill(okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// The sender's half of a link: made once per (own epoch, recipient envelope key), kept in the
/// vault, used for every envelope to that key in that epoch.
pub struct OutboundLink {
    id: LinkId,
    recipient_key_id: EnvelopeKeyId,
    epoch_id: EpochId,
    lpk: [u8; 32],
    ct: Box<[u8; MLKEM1024_CT_LEN]>,
    secret: Zeroizing<[u8; 32]>,
    /// The recipient acknowledged the link: envelopes on it are short.
    pub acked: bool,
}

impl fmt::Debug for OutboundLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundLink")
            .field("id", &crate::hybrid::hex_prefix(&self.id))
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

impl OutboundLink {
    /// A new link from `sender`'s epoch to `recipient`: one X25519 exchange with a fresh key
    /// and one ML-KEM-1024 encapsulation (§1). Refuses a small-order recipient X25519 key.
    pub fn new<R: Rng + CryptoRng>(
        recipient: &EnvelopePublicKey,
        sender: &EpochSigningKey,
        rng: &mut R,
    ) -> Result<Self, CryptoError> {
        let mut lsk = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(lsk.as_mut());
        let lsk = x25519_dalek::StaticSecret::from(*lsk);
        let lpk = *x25519_dalek::PublicKey::from(&lsk).as_bytes();
        let ss_x = lsk.diffie_hellman(&x25519_dalek::PublicKey::from(recipient.x25519));
        if !ss_x.was_contributory() {
            return Err(CryptoError::BadPublicKey {
                what: "recipient X25519 key",
            });
        }
        let mut m = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(m.as_mut());
        let ek = mlkem1024::MlKem1024PublicKey::from(&*recipient.mlkem);
        let (ct, ss_m) = mlkem1024::encapsulate(&ek, *m);
        let ss_m = Zeroizing::new(ss_m);
        let mut ct_bytes = Box::new([0u8; MLKEM1024_CT_LEN]);
        ct_bytes.copy_from_slice(ct.as_ref());
        let key_id = recipient.key_id();
        Ok(Self {
            id: link_id(&key_id, &lpk, ct_bytes.as_ref()),
            secret: link_secret(&ss_m, ss_x.as_bytes(), &key_id, &lpk, ct_bytes.as_ref()),
            recipient_key_id: key_id,
            epoch_id: sender.epoch_id(),
            lpk,
            ct: ct_bytes,
            acked: false,
        })
    }

    /// The link's id.
    pub fn id(&self) -> LinkId {
        self.id
    }

    /// Whether this link goes from `sender`'s current epoch to `recipient`'s current key (if
    /// not, the next envelope needs a new link).
    pub fn serves(&self, recipient: &EnvelopePublicKey, sender: &EpochSigningKey) -> bool {
        self.recipient_key_id == recipient.key_id() && self.epoch_id == sender.epoch_id()
    }

    /// Encoding for the vault (secret: keep it encrypted).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(OUTBOUND_LEN));
        out.push(OUTBOUND_VERSION);
        out.extend_from_slice(&self.recipient_key_id);
        out.extend_from_slice(&self.epoch_id);
        out.extend_from_slice(&self.lpk);
        out.extend_from_slice(self.ct.as_ref());
        out.extend_from_slice(self.secret.as_ref());
        out.push(u8::from(self.acked));
        out
    }

    /// Parses [`OutboundLink::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes, "outbound link");
        let version = r.u8()?;
        if version != OUTBOUND_VERSION {
            return Err(CryptoError::UnknownVersion(version));
        }
        let recipient_key_id: EnvelopeKeyId = r.array()?;
        let epoch_id: EpochId = r.array()?;
        let lpk: [u8; 32] = r.array()?;
        let ct: Box<[u8; MLKEM1024_CT_LEN]> = Box::new(r.array()?);
        let secret = Zeroizing::new(r.array::<32>()?);
        let acked = match r.u8()? {
            0 => false,
            1 => true,
            _ => {
                return Err(CryptoError::Malformed {
                    what: "outbound link flag",
                });
            }
        };
        r.finish()?;
        Ok(Self {
            id: link_id(&recipient_key_id, &lpk, ct.as_ref()),
            recipient_key_id,
            epoch_id,
            lpk,
            ct,
            secret,
            acked,
        })
    }
}

/// The recipient's half of a link: learned from the first full envelope on it, kept in the
/// vault until no envelope sealed on it can still open.
#[derive(Clone)]
pub struct InboundLink {
    id: LinkId,
    key_id: EnvelopeKeyId,
    secret: Zeroizing<[u8; 32]>,
    /// The sender's verified epoch.
    pub epoch: VerifiedEpoch,
}

impl fmt::Debug for InboundLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundLink")
            .field("id", &crate::hybrid::hex_prefix(&self.id))
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl InboundLink {
    /// The link's id.
    pub fn id(&self) -> LinkId {
        self.id
    }

    /// The recipient envelope key the link was made for.
    pub fn key_id(&self) -> EnvelopeKeyId {
        self.key_id
    }

    /// After this (ms) no envelope on the link opens: sent at most at the epoch's end, opened
    /// at most [`MAX_ENVELOPE_AGE_MS`] later. Delete the link then.
    pub fn usable_until(&self) -> u64 {
        self.epoch.not_after.saturating_add(MAX_ENVELOPE_AGE_MS)
    }

    /// Encoding for the vault (secret: keep it encrypted).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(INBOUND_LEN));
        out.push(INBOUND_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(self.secret.as_ref());
        out.extend_from_slice(&self.epoch.account_id.0);
        out.extend_from_slice(&self.epoch.device_id.to_be_bytes());
        out.extend_from_slice(&self.epoch.epoch_id);
        out.extend_from_slice(&self.epoch.key);
        out.extend_from_slice(&self.epoch.not_before.to_be_bytes());
        out.extend_from_slice(&self.epoch.not_after.to_be_bytes());
        out
    }

    /// Parses [`InboundLink::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(bytes, "inbound link");
        let version = r.u8()?;
        if version != INBOUND_VERSION {
            return Err(CryptoError::UnknownVersion(version));
        }
        let link = Self {
            id: r.array()?,
            key_id: r.array()?,
            secret: Zeroizing::new(r.array::<32>()?),
            epoch: VerifiedEpoch {
                account_id: AccountId(r.array()?),
                device_id: r.u32()?,
                epoch_id: r.array()?,
                key: r.array()?,
                not_before: r.u64()?,
                not_after: r.u64()?,
            },
        };
        r.finish()?;
        Ok(link)
    }
}

/// Where a recipient finds the links it learned (its vault; a map in tests).
pub trait InboundLinks {
    /// The link with this id, if known.
    fn inbound_link(&self, id: &LinkId) -> Option<InboundLink>;
}

impl InboundLinks for HashMap<LinkId, InboundLink> {
    fn inbound_link(&self, id: &LinkId) -> Option<InboundLink> {
        self.get(id).cloned()
    }
}

/// What to seal on a link.
#[derive(Debug)]
pub struct LinkedSealRequest<'a> {
    /// The recipient device's envelope key (from its verified device certificate).
    pub recipient: &'a EnvelopePublicKey,
    /// This device's current epoch key.
    pub sender: &'a EpochSigningKey,
    /// The link from `sender`'s epoch to `recipient` ([`OutboundLink::serves`]); full
    /// envelope until it is acknowledged, short after.
    pub link: &'a OutboundLink,
    /// The newest link the recipient device made to us, to acknowledge it.
    pub ack: Option<LinkId>,
    /// Sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// The libsignal ciphertext.
    pub content: &'a [u8],
}

/// Seals `request.content` as a v2 envelope (`docs/envelope.md`).
pub fn seal_linked<R: Rng + CryptoRng>(
    request: &LinkedSealRequest<'_>,
    rng: &mut R,
) -> Result<SealedEnvelope, CryptoError> {
    if request.content.len() > MAX_CONTENT_LEN {
        return Err(CryptoError::TooLarge {
            len: request.content.len(),
            max: MAX_CONTENT_LEN,
        });
    }
    let link = request.link;
    if !link.serves(request.recipient, request.sender) {
        return Err(CryptoError::Malformed {
            what: "envelope link (made for another key or epoch)",
        });
    }
    let full = !link.acked;
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);

    let mut header = Vec::with_capacity(FULL_HEADER_LEN);
    header.push(ENVELOPE_V2);
    header.push(if full { KIND_FULL } else { KIND_SHORT });
    header.extend_from_slice(&id);
    header.extend_from_slice(&link.recipient_key_id);
    if full {
        header.extend_from_slice(&link.lpk);
        header.extend_from_slice(link.ct.as_ref());
    } else {
        header.extend_from_slice(&link.id);
    }
    let th = transcript_hash(&header, request.recipient);
    let (key, nonce) = derive_keys(&link.secret, &th);

    let sender = request.sender;
    let certificate = full.then(|| sender.certificate().to_bytes());
    let plaintext = crate::envelope::build_body(
        &header,
        crate::envelope::BodyParts {
            version: ENVELOPE_V2,
            sender,
            sent_at: request.sent_at,
            certificate: certificate.as_deref(),
            ack: request.ack.as_ref(),
            content: request.content,
            pair: &*sender.pair_key(request.recipient)?,
        },
    );
    crate::envelope::finish_sealing(id, header, &key, &nonce, &plaintext, MAX_PADDED_LEN_V2)
}

/// How an opened v2 envelope relates to its link.
pub(crate) enum LinkState {
    /// A v1 envelope: no link.
    None,
    /// A full envelope: the link it establishes (stored once the envelope verifies).
    New {
        id: LinkId,
        secret: Zeroizing<[u8; 32]>,
    },
    /// A short envelope on a link the recipient knows.
    Known(InboundLink),
}

/// A verified envelope and what the recipient must remember because of it.
#[derive(Debug)]
pub struct Received {
    /// The envelope.
    pub envelope: VerifiedEnvelope,
    /// A full envelope's certificate (it carries the sender's account keys).
    pub certificate: Option<EpochCertificate>,
    /// A link this envelope established: store it (in the same transaction as the envelope's
    /// effects) and acknowledge it in envelopes to the sender device.
    pub new_link: Option<InboundLink>,
    /// The sender acknowledged this link of ours: later envelopes on it may be short.
    pub ack: Option<LinkId>,
}

impl EnvelopeKeyRing {
    /// Opens and verifies an envelope of either version: v1 (must carry its certificate), v2
    /// full (carries the KEM ciphertext and certificate; establishes a link) or v2 short (on a
    /// link found in `links`). Checks run in the order `docs/envelope.md` §6 lists.
    pub fn receive(
        &self,
        bytes: &[u8],
        now_ms: u64,
        links: &dyn InboundLinks,
    ) -> Result<Received, CryptoError> {
        match bytes.first() {
            Some(&crate::envelope::ENVELOPE_VERSION) => {
                let opened = self.open(bytes, now_ms)?;
                let certificate = opened.certificate.clone();
                let (envelope, _) = self.verify_with_certificate(opened, now_ms)?;
                Ok(Received {
                    envelope,
                    certificate,
                    new_link: None,
                    ack: None,
                })
            }
            Some(&ENVELOPE_V2) => {
                let opened = self.open_v2(bytes, now_ms, links)?;
                self.verify_v2(opened, now_ms)
            }
            Some(&v) => Err(CryptoError::UnknownVersion(v)),
            None => Err(CryptoError::BadLength { what: "envelope" }),
        }
    }

    /// Decrypts and parses a v2 envelope; the sender is still only claimed.
    pub(crate) fn open_v2(
        &self,
        bytes: &[u8],
        now_ms: u64,
        links: &dyn InboundLinks,
    ) -> Result<OpenedEnvelope, CryptoError> {
        let bad_length = CryptoError::BadLength { what: "envelope" };
        let full = match bytes.get(1) {
            Some(&KIND_FULL) => true,
            Some(&KIND_SHORT) => false,
            Some(_) => {
                return Err(CryptoError::Malformed {
                    what: "envelope kind",
                });
            }
            None => return Err(bad_length),
        };
        let header_len = if full {
            FULL_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        };
        let body = bytes
            .len()
            .checked_sub(header_len + TAG_LEN)
            .ok_or(CryptoError::BadLength { what: "envelope" })?;
        if !(MIN_PADDED_LEN_V2..=MAX_PADDED_LEN_V2).contains(&body) || padded_len_v2(body) != body {
            return Err(bad_length);
        }
        let (header, ciphertext) = bytes.split_at(header_len);
        let mut r = Reader::new(header, "envelope header");
        let _version_and_kind: [u8; 2] = r.array()?;
        let id = EnvelopeId(r.array()?);
        let key_id: EnvelopeKeyId = r.array()?;
        let key = self.find(&key_id, now_ms).ok_or(CryptoError::UnknownKey)?;
        let (link, secret) = if full {
            let lpk: [u8; 32] = r.array()?;
            let ct: [u8; MLKEM1024_CT_LEN] = r.array()?;
            let ss_x = key
                .x25519_secret()
                .diffie_hellman(&x25519_dalek::PublicKey::from(lpk));
            if !ss_x.was_contributory() {
                return Err(CryptoError::Decrypt);
            }
            let ss_m = key.decapsulate(&ct);
            let secret = link_secret(&ss_m, ss_x.as_bytes(), &key_id, &lpk, &ct);
            (
                LinkState::New {
                    id: link_id(&key_id, &lpk, &ct),
                    secret: secret.clone(),
                },
                secret,
            )
        } else {
            let id: LinkId = r.array()?;
            let link = links
                .inbound_link(&id)
                .filter(|l| l.key_id == key_id)
                .ok_or(CryptoError::UnknownLink)?;
            let secret = link.secret.clone();
            (LinkState::Known(link), secret)
        };
        r.finish()?;
        let th = transcript_hash(header, key.public());
        let (aead_key, nonce) = derive_keys(&secret, &th);
        let plaintext = open_body(&aead_key, &nonce, header, ciphertext)?;
        let mut opened = parse_body(ENVELOPE_V2, header, id, &plaintext)?;
        if opened.certificate.is_some() != full {
            return Err(CryptoError::Malformed {
                what: "envelope certificate (full envelopes carry it, short ones do not)",
            });
        }
        opened.key_id = key_id;
        opened.link = link;
        Ok(opened)
    }

    fn verify_v2(&self, mut opened: OpenedEnvelope, now_ms: u64) -> Result<Received, CryptoError> {
        let ack = opened.ack;
        match std::mem::replace(&mut opened.link, LinkState::None) {
            LinkState::Known(link) => {
                let envelope = self.verify_sender(opened, &link.epoch, now_ms)?;
                Ok(Received {
                    envelope,
                    certificate: None,
                    new_link: None,
                    ack,
                })
            }
            LinkState::New { id, secret } => {
                let key_id = opened.key_id;
                let certificate = opened.certificate.clone();
                let (envelope, epoch) = self.verify_with_certificate(opened, now_ms)?;
                Ok(Received {
                    envelope,
                    certificate,
                    new_link: Some(InboundLink {
                        id,
                        key_id,
                        secret,
                        epoch,
                    }),
                    ack,
                })
            }
            LinkState::None => Err(CryptoError::Malformed {
                what: "envelope link",
            }),
        }
    }
}
