//! Envelope v1: the post-quantum, sealed-sender wrapper around every Signal message.
//! The byte-exact format is `docs/envelope.md`; constants here follow its section numbers.

use std::collections::HashSet;
use std::fmt;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libcrux_ml_kem::mlkem1024;
use rand::{CryptoRng, Rng};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::device::{EnvelopeKeyId, EnvelopeKeyPair, EnvelopePublicKey, MLKEM1024_CT_LEN};
use crate::epoch::{
    EPOCH_CERTIFICATE_LEN, EpochCertificate, EpochId, EpochSigningKey, PairKeyCache, VerifiedEpoch,
    pair_key,
};
use crate::identity::AccountId;
use crate::link::{LinkId, LinkState, SENDER_CONTEXT_V2, padded_len_v2};
use crate::wire::Reader;

/// The only version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Length of the clear header (§2).
pub const HEADER_LEN: usize = 1 + 16 + 16 + 32 + MLKEM1024_CT_LEN;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Largest content (a libsignal message) an envelope carries (§4).
pub const MAX_CONTENT_LEN: usize = 128 * 1024;
/// Largest padded plaintext (§2).
pub const MAX_PADDED_LEN: usize = 132 * 1024;
/// Smallest and largest whole envelopes.
pub const MIN_ENVELOPE_LEN: usize = HEADER_LEN + 64 + TAG_LEN;
/// See [`MIN_ENVELOPE_LEN`].
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + MAX_PADDED_LEN + TAG_LEN;

/// How far a sender's clock may run ahead of the recipient's (1 day, the slack certificates
/// already carry at their start).
pub const MAX_CLOCK_SKEW_MS: u64 = 86_400_000;
/// The oldest envelope a recipient opens (90 days after its send time): the longest mailbox
/// retention a relay may be configured with. Recipients keep retired envelope keys this long
/// after their certificate ends, and seen envelope ids this long after they were seen.
pub const MAX_ENVELOPE_AGE_MS: u64 = 90 * 86_400_000;

const SENDER_FIXED_LEN: usize = 1 + 32 + 4 + 16 + 8;
/// Length of the sender authentication tag (§5).
const SENDER_TAG_LEN: usize = 32;
const FLAG_CERTIFICATE: u8 = 0x01;
/// v2 only: a 16-byte link acknowledgement follows the certificate part.
const FLAG_ACK: u8 = 0x02;
const TRANSCRIPT_CONTEXT: &str = "tessera v1 envelope transcript";
const KEYS_CONTEXT: &str = "tessera v1 envelope keys";
const SENDER_CONTEXT: &str = "tessera v1 envelope sender";

/// An envelope's de-duplication id (random, 16 bytes, in the clear header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvelopeId(pub [u8; 16]);

impl fmt::Debug for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeId({})", crate::hybrid::hex_prefix(&self.0))
    }
}

/// The padded plaintext length for an unpadded length `u` (§4).
pub fn padded_len(u: usize) -> usize {
    let round = |n: usize, m: usize| n.div_ceil(m) * m;
    match u {
        0..=1024 => round(u.max(1), 64),
        1025..=16384 => round(u, 256),
        _ => round(u, 4096),
    }
}

/// What to seal.
#[derive(Debug)]
pub struct SealRequest<'a> {
    /// The recipient device's envelope key (from its verified device certificate).
    pub recipient: &'a EnvelopePublicKey,
    /// This device's current epoch key.
    pub sender: &'a EpochSigningKey,
    /// Include the epoch certificate (first envelope to this recipient device in this epoch).
    pub include_certificate: bool,
    /// Sender's clock, ms since the Unix epoch.
    pub sent_at: u64,
    /// The libsignal ciphertext.
    pub content: &'a [u8],
}

/// A sealed envelope and its id.
#[derive(Debug, Clone)]
pub struct SealedEnvelope {
    /// The id inside the header, for the sender's outbox.
    pub id: EnvelopeId,
    /// The bytes to send to the relay.
    pub bytes: Vec<u8>,
}

fn transcript_hash(header_fields: &[u8], recipient: &EnvelopePublicKey) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(TRANSCRIPT_CONTEXT);
    h.update(header_fields);
    h.update(&recipient.x25519);
    h.update(recipient.mlkem.as_ref());
    *h.finalize().as_bytes()
}

/// `key (32) || nonce (24)` from both shared secrets and the transcript (§3).
fn derive_keys(ss_m: &[u8; 32], ss_x: &[u8; 32], th: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; 24]) {
    let mut h = blake3::Hasher::new_derive_key(KEYS_CONTEXT);
    h.update(ss_m);
    h.update(ss_x);
    h.update(th);
    let mut okm = Zeroizing::new([0u8; 56]);
    h.finalize_xof().fill(okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// `BLAKE3-keyed(pair key, digest)`: the sender tag (§5).
fn sender_tag(pair: &[u8; 32], digest: &[u8; 32]) -> blake3::Hash {
    blake3::keyed_hash(pair, digest)
}

/// `H(context, header || fixed || cert_part || ack_part || content_part)`: what the sender tag
/// covers (§5); `ack_part` is empty in v1.
fn sender_digest(
    version: u8,
    header: &[u8],
    fixed: &[u8],
    cert_part: &[u8],
    ack_part: &[u8],
    content_part: &[u8],
) -> [u8; 32] {
    let context = if version == ENVELOPE_VERSION {
        SENDER_CONTEXT
    } else {
        SENDER_CONTEXT_V2
    };
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(header);
    h.update(fixed);
    h.update(cert_part);
    h.update(ack_part);
    h.update(content_part);
    *h.finalize().as_bytes()
}

/// Everything in an envelope's plaintext but the padding, for [`build_body`].
pub(crate) struct BodyParts<'a> {
    pub version: u8,
    pub sender: &'a EpochSigningKey,
    pub sent_at: u64,
    pub certificate: Option<&'a [u8]>,
    pub ack: Option<&'a LinkId>,
    pub content: &'a [u8],
    pub pair: &'a [u8; 32],
}

/// The padded plaintext (§4) with its sender tag (§5), for either version.
pub(crate) fn build_body(header: &[u8], parts: BodyParts<'_>) -> Zeroizing<Vec<u8>> {
    let sender = parts.sender;
    let mut flags = 0;
    if parts.certificate.is_some() {
        flags |= FLAG_CERTIFICATE;
    }
    if parts.ack.is_some() {
        flags |= FLAG_ACK;
    }
    let mut fixed = Vec::with_capacity(SENDER_FIXED_LEN);
    fixed.push(flags);
    fixed.extend_from_slice(&sender.account_id().0);
    fixed.extend_from_slice(&sender.device_id().to_be_bytes());
    fixed.extend_from_slice(&sender.epoch_id());
    fixed.extend_from_slice(&parts.sent_at.to_be_bytes());
    let mut cert_part = Vec::new();
    if let Some(cert) = parts.certificate {
        cert_part.extend_from_slice(&(EPOCH_CERTIFICATE_LEN as u16).to_be_bytes());
        cert_part.extend_from_slice(cert);
    }
    let ack_part: &[u8] = parts.ack.map_or(&[], |a| &a[..]);
    let mut content_part = Vec::with_capacity(4 + parts.content.len());
    content_part.extend_from_slice(&(parts.content.len() as u32).to_be_bytes());
    content_part.extend_from_slice(parts.content);
    let digest = sender_digest(
        parts.version,
        header,
        &fixed,
        &cert_part,
        ack_part,
        &content_part,
    );
    let tag = sender_tag(parts.pair, &digest);
    let unpadded =
        fixed.len() + SENDER_TAG_LEN + cert_part.len() + ack_part.len() + content_part.len();
    let padded = padded_for(parts.version, unpadded);
    let mut plaintext = Zeroizing::new(Vec::with_capacity(padded));
    plaintext.extend_from_slice(&fixed);
    plaintext.extend_from_slice(tag.as_bytes());
    plaintext.extend_from_slice(&cert_part);
    plaintext.extend_from_slice(ack_part);
    plaintext.extend_from_slice(&content_part);
    plaintext.resize(padded, 0);
    plaintext
}

fn padded_for(version: u8, unpadded: usize) -> usize {
    if version == ENVELOPE_VERSION {
        padded_len(unpadded)
    } else {
        padded_len_v2(unpadded)
    }
}

/// Seals `request.content` to the recipient (§2–§5).
pub fn seal<R: Rng + CryptoRng>(
    request: &SealRequest<'_>,
    rng: &mut R,
) -> Result<SealedEnvelope, CryptoError> {
    if request.content.len() > MAX_CONTENT_LEN {
        return Err(CryptoError::TooLarge {
            len: request.content.len(),
            max: MAX_CONTENT_LEN,
        });
    }
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);

    // Hybrid KEM.
    let mut esk_bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(esk_bytes.as_mut());
    let esk = x25519_dalek::StaticSecret::from(*esk_bytes);
    let epk = x25519_dalek::PublicKey::from(&esk);
    let ss_x = esk.diffie_hellman(&x25519_dalek::PublicKey::from(request.recipient.x25519));
    if !ss_x.was_contributory() {
        return Err(CryptoError::BadPublicKey {
            what: "recipient X25519 key",
        });
    }
    let mut m = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(m.as_mut());
    let ek = mlkem1024::MlKem1024PublicKey::from(&*request.recipient.mlkem);
    let (ct, ss_m) = mlkem1024::encapsulate(&ek, *m);
    let ss_m = Zeroizing::new(ss_m);

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.push(ENVELOPE_VERSION);
    header.extend_from_slice(&id);
    header.extend_from_slice(&request.recipient.key_id());
    header.extend_from_slice(epk.as_bytes());
    header.extend_from_slice(ct.as_ref());
    let th = transcript_hash(&header, request.recipient);
    let (key, nonce) = derive_keys(&ss_m, ss_x.as_bytes(), &th);

    // Plaintext (§4).
    let sender = request.sender;
    let certificate = request
        .include_certificate
        .then(|| sender.certificate().to_bytes());
    let plaintext = build_body(
        &header,
        BodyParts {
            version: ENVELOPE_VERSION,
            sender,
            sent_at: request.sent_at,
            certificate: certificate.as_deref(),
            ack: None,
            content: request.content,
            pair: &*sender.pair_key(request.recipient)?,
        },
    );

    finish_sealing(id, header, &key, &nonce, &plaintext, MAX_PADDED_LEN)
}

/// `header || XChaCha20-Poly1305(key, nonce, aad = header, plaintext)`: the last step of
/// sealing either version.
pub(crate) fn finish_sealing(
    id: [u8; 16],
    header: Vec<u8>,
    key: &[u8; 32],
    nonce: &[u8; 24],
    plaintext: &[u8],
    max: usize,
) -> Result<SealedEnvelope, CryptoError> {
    let ciphertext = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: &header,
            },
        )
        .map_err(|_| CryptoError::TooLarge {
            len: plaintext.len(),
            max,
        })?;
    let mut bytes = header;
    bytes.extend_from_slice(&ciphertext);
    Ok(SealedEnvelope {
        id: EnvelopeId(id),
        bytes,
    })
}

/// Authenticated decryption of an envelope body under its header; any failure is `Decrypt`.
pub(crate) fn open_body(
    key: &[u8; 32],
    nonce: &[u8; 24],
    header: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: header,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

/// The recipient's envelope keys: the current one and those within their grace period. It also
/// caches the pair key per (recipient key, sender epoch key), so the X25519 operation behind
/// sender authentication is paid once per sender epoch.
#[derive(Default)]
pub struct EnvelopeKeyRing {
    keys: Vec<(EnvelopeKeyPair, u64)>,
    /// Pair keys by (our envelope key id, sender epoch public key).
    pairs: PairKeyCache<(EnvelopeKeyId, [u8; 32])>,
}

impl fmt::Debug for EnvelopeKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeKeyRing")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl EnvelopeKeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys the ring holds (the current one and those in their grace period).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a key usable until `usable_until` ms (`u64::MAX` for the current key; a retired
    /// key until its grace period ends). Inserting a key the ring holds sets its end instead.
    pub fn insert(&mut self, key: EnvelopeKeyPair, usable_until: u64) {
        let id = key.public().key_id();
        match self
            .keys
            .iter_mut()
            .find(|(k, _)| k.public().key_id() == id)
        {
            Some((_, until)) => *until = usable_until,
            None => self.keys.push((key, usable_until)),
        }
    }

    /// Drops (and thereby zeroizes) keys whose grace period ended before `now_ms`; returns how
    /// many were dropped.
    pub fn prune(&mut self, now_ms: u64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|(_, until)| *until >= now_ms);
        let live: HashSet<EnvelopeKeyId> =
            self.keys.iter().map(|(k, _)| k.public().key_id()).collect();
        self.pairs.retain(|(id, _)| live.contains(id));
        before - self.keys.len()
    }

    pub(crate) fn find(&self, key_id: &EnvelopeKeyId, now_ms: u64) -> Option<&EnvelopeKeyPair> {
        self.keys
            .iter()
            .find(|(k, until)| *until >= now_ms && k.public().key_id() == *key_id)
            .map(|(k, _)| k)
    }

    /// Decrypts and parses an envelope (§2–§4). The sender is *claimed*, not yet verified:
    /// pass the result to [`EnvelopeKeyRing::verify_sender`] or
    /// [`EnvelopeKeyRing::verify_with_certificate`].
    pub fn open(&self, bytes: &[u8], now_ms: u64) -> Result<OpenedEnvelope, CryptoError> {
        // Length and version first, before any cryptography (§2).
        if bytes.is_empty() {
            return Err(CryptoError::BadLength { what: "envelope" });
        }
        if bytes[0] != ENVELOPE_VERSION {
            return Err(CryptoError::UnknownVersion(bytes[0]));
        }
        if bytes.len() < MIN_ENVELOPE_LEN
            || bytes.len() > MAX_ENVELOPE_LEN
            || !(bytes.len() - HEADER_LEN - TAG_LEN).is_multiple_of(64)
        {
            return Err(CryptoError::BadLength { what: "envelope" });
        }
        let (header, ciphertext) = bytes.split_at(HEADER_LEN);
        let mut r = Reader::new(header, "envelope header");
        let _version = r.u8()?;
        let id = EnvelopeId(r.array()?);
        let key_id: EnvelopeKeyId = r.array()?;
        let epk: [u8; 32] = r.array()?;
        let ct: [u8; MLKEM1024_CT_LEN] = r.array()?;
        r.finish()?;

        let key = self.find(&key_id, now_ms).ok_or(CryptoError::UnknownKey)?;
        let ss_x = key
            .x25519_secret()
            .diffie_hellman(&x25519_dalek::PublicKey::from(epk));
        if !ss_x.was_contributory() {
            return Err(CryptoError::Decrypt);
        }
        let ss_m = key.decapsulate(&ct);
        let th = transcript_hash(header, key.public());
        let (aead_key, nonce) = derive_keys(&ss_m, ss_x.as_bytes(), &th);
        let plaintext = open_body(&aead_key, &nonce, header, ciphertext)?;
        let mut opened = parse_body(ENVELOPE_VERSION, header, id, &plaintext)?;
        opened.key_id = key_id;
        Ok(opened)
    }

    /// The pair key between our envelope key `key_id` and a sender's epoch key (cached).
    fn pair_key(
        &self,
        key_id: &EnvelopeKeyId,
        epoch_pk: &[u8; 32],
        now_ms: u64,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        self.pairs.get_or_compute((*key_id, *epoch_pk), || {
            let key = self.find(key_id, now_ms).ok_or(CryptoError::UnknownKey)?;
            let shared = key
                .x25519_secret()
                .diffie_hellman(&x25519_dalek::PublicKey::from(*epoch_pk));
            if !shared.was_contributory() {
                return Err(CryptoError::BadPublicKey { what: "epoch key" });
            }
            Ok(pair_key(shared.as_bytes(), epoch_pk, &key.public().x25519))
        })
    }

    /// Verifies the sender tag with an epoch key the caller already trusts (cached from an
    /// earlier certificate). The epoch must belong to the claimed sender, the envelope's
    /// authenticated send time must lie inside the epoch's window, be at most
    /// [`MAX_CLOCK_SKEW_MS`] ahead of `now_ms` and at most [`MAX_ENVELOPE_AGE_MS`] behind it
    /// (`docs/envelope.md` §5).
    pub fn verify_sender(
        &self,
        opened: OpenedEnvelope,
        epoch: &VerifiedEpoch,
        now_ms: u64,
    ) -> Result<VerifiedEnvelope, CryptoError> {
        let bad = CryptoError::BadSignature {
            what: "envelope sender",
        };
        if epoch.account_id != opened.sender.account_id
            || epoch.device_id != opened.sender.device_id
            || epoch.epoch_id != opened.sender.epoch_id
        {
            return Err(bad);
        }
        let pair = self.pair_key(&opened.key_id, &epoch.key, now_ms)?;
        // blake3::Hash compares in constant time. The tag first: `sent_at` is only meaningful
        // once it is authenticated.
        if sender_tag(&pair, &opened.digest) != blake3::Hash::from_bytes(opened.tag) {
            return Err(bad);
        }
        if opened.sent_at < epoch.not_before || opened.sent_at > epoch.not_after {
            return Err(CryptoError::Expired {
                what: "epoch certificate",
            });
        }
        if opened.sent_at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(CryptoError::Expired {
                what: "envelope send time (ahead of this clock)",
            });
        }
        if now_ms > opened.sent_at.saturating_add(MAX_ENVELOPE_AGE_MS) {
            return Err(CryptoError::Expired {
                what: "envelope (older than the longest mailbox retention)",
            });
        }
        Ok(VerifiedEnvelope {
            id: opened.id,
            sender: opened.sender,
            sent_at: opened.sent_at,
            content: opened.content,
        })
    }

    /// Verifies the certificate carried in the envelope, then the sender tag with it. Returns the
    /// verified epoch for the caller to cache.
    pub fn verify_with_certificate(
        &self,
        opened: OpenedEnvelope,
        now_ms: u64,
    ) -> Result<(VerifiedEnvelope, VerifiedEpoch), CryptoError> {
        let cert = opened
            .certificate
            .as_ref()
            .ok_or(CryptoError::BadSignature {
                what: "envelope sender (no certificate)",
            })?;
        // The window is checked at the authenticated send time in `verify_sender`; here the
        // certificate's own signatures (and window length) at that same time.
        let epoch = cert.verify(opened.sent_at)?;
        let verified = self.verify_sender(opened, &epoch, now_ms)?;
        Ok((verified, epoch))
    }
}

/// Parses a decrypted plaintext (§4) of envelope `version` and computes the digest its sender
/// tag must match (§5).
pub(crate) fn parse_body(
    version: u8,
    header: &[u8],
    id: EnvelopeId,
    plaintext: &[u8],
) -> Result<OpenedEnvelope, CryptoError> {
    let malformed = |what| CryptoError::Malformed { what };
    let mut r = Reader::new(plaintext, "envelope plaintext");
    let fixed = r.take(SENDER_FIXED_LEN)?;
    let tag: [u8; SENDER_TAG_LEN] = r.array()?;
    let mut f = Reader::new(fixed, "envelope sender");
    let flags = f.u8()?;
    let known = if version == ENVELOPE_VERSION {
        FLAG_CERTIFICATE
    } else {
        FLAG_CERTIFICATE | FLAG_ACK
    };
    if flags & !known != 0 {
        return Err(malformed("envelope flags"));
    }
    let account_id = AccountId(f.array()?);
    let device_id = f.u32()?;
    let epoch_id: EpochId = f.array()?;
    let sent_at = f.u64()?;

    let start = SENDER_FIXED_LEN + SENDER_TAG_LEN;
    let (cert_part, certificate) = if flags & FLAG_CERTIFICATE != 0 {
        let len = usize::from(r.u16()?);
        if len != EPOCH_CERTIFICATE_LEN {
            return Err(malformed("envelope certificate length"));
        }
        let cert = EpochCertificate::from_bytes(r.take(len)?)?;
        (&plaintext[start..start + 2 + len], Some(cert))
    } else {
        (&plaintext[..0], None)
    };
    let ack_start = start + cert_part.len();
    let (ack_part, ack) = if flags & FLAG_ACK != 0 {
        let ack: LinkId = r.array()?;
        (&plaintext[ack_start..ack_start + 16], Some(ack))
    } else {
        (&plaintext[..0], None)
    };
    let content_len = r.u32()? as usize;
    if content_len > MAX_CONTENT_LEN {
        return Err(malformed("envelope content length"));
    }
    let content = r.take(content_len)?.to_vec();
    let content_start = ack_start + ack_part.len();
    let unpadded = content_start + 4 + content_len;
    let padding = r.rest();
    if padded_for(version, unpadded) != plaintext.len() || padding.iter().any(|&b| b != 0) {
        return Err(malformed("envelope padding"));
    }
    let digest = sender_digest(
        version,
        header,
        fixed,
        cert_part,
        ack_part,
        &plaintext[content_start..content_start + 4 + content_len],
    );
    Ok(OpenedEnvelope {
        id,
        sender: SenderClaim {
            account_id,
            device_id,
            epoch_id,
        },
        sent_at,
        certificate,
        content,
        key_id: [0; 16],
        digest,
        tag,
        ack,
        link: LinkState::None,
    })
}

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `plaintext` as a decrypted envelope body behind an all-zero header.
    pub fn parse_plaintext(plaintext: &[u8]) -> Result<(), crate::CryptoError> {
        let header = [0u8; super::HEADER_LEN];
        for version in [super::ENVELOPE_VERSION, crate::link::ENVELOPE_V2] {
            super::parse_body(version, &header, super::EnvelopeId([0; 16]), plaintext)?;
        }
        Ok(())
    }
}

/// Who an envelope says it is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClaim {
    /// Sender account.
    pub account_id: AccountId,
    /// Sender device.
    pub device_id: u32,
    /// Epoch whose key authenticated the envelope.
    pub epoch_id: EpochId,
}

/// A decrypted envelope whose sender is not yet verified.
pub struct OpenedEnvelope {
    /// De-duplication id.
    pub id: EnvelopeId,
    /// Claimed sender.
    pub sender: SenderClaim,
    /// Sender's clock (ms).
    pub sent_at: u64,
    /// The epoch certificate, if the sender included one.
    pub certificate: Option<EpochCertificate>,
    content: Vec<u8>,
    pub(crate) key_id: EnvelopeKeyId,
    digest: [u8; 32],
    tag: [u8; SENDER_TAG_LEN],
    /// v2: the link the sender acknowledges.
    pub(crate) ack: Option<LinkId>,
    /// v2: the link this envelope came on.
    pub(crate) link: LinkState,
}

impl fmt::Debug for OpenedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedEnvelope")
            .field("id", &self.id)
            .field("sender", &self.sender)
            .field("content_len", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// An envelope whose sender checked out.
#[derive(Debug)]
pub struct VerifiedEnvelope {
    /// De-duplication id.
    pub id: EnvelopeId,
    /// Verified sender.
    pub sender: SenderClaim,
    /// Sender's clock (ms).
    pub sent_at: u64,
    /// The libsignal ciphertext to decrypt with the sender's session.
    pub content: Vec<u8>,
}

/// What replay detection is keyed on: the verified sender and the envelope id
/// (`docs/envelope.md` §5). With the sender in the key, a peer who learns another sender's
/// envelope id cannot pre-empt that envelope by sending one with the same id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ReplayKey {
    /// Verified sender account.
    pub account_id: AccountId,
    /// Verified sender device.
    pub device_id: u32,
    /// The envelope id.
    pub id: EnvelopeId,
}

impl ReplayKey {
    /// `account id (32) || device id (4) || envelope id (16)`, as stored.
    pub fn to_bytes(&self) -> [u8; 52] {
        let mut out = [0u8; 52];
        out[..32].copy_from_slice(&self.account_id.0);
        out[32..36].copy_from_slice(&self.device_id.to_be_bytes());
        out[36..].copy_from_slice(&self.id.0);
        out
    }
}

/// Envelopes already accepted (the caller persists them; `docs/envelope.md` §5).
pub trait SeenIds {
    /// Records `key`; returns `false` if it was already there.
    fn insert_new(&mut self, key: ReplayKey) -> bool;
}

impl SeenIds for HashSet<ReplayKey> {
    fn insert_new(&mut self, key: ReplayKey) -> bool {
        self.insert(key)
    }
}

impl VerifiedEnvelope {
    /// The key replay detection uses for this envelope.
    pub fn replay_key(&self) -> ReplayKey {
        ReplayKey {
            account_id: self.sender.account_id,
            device_id: self.sender.device_id,
            id: self.id,
        }
    }

    /// Accepts the envelope once: `Replayed` if the same sender's envelope with this id was
    /// seen before. Call this only after verification, so forged envelopes cannot mark
    /// anything as seen.
    pub fn accept_once(self, seen: &mut dyn SeenIds) -> Result<Self, CryptoError> {
        if seen.insert_new(self.replay_key()) {
            Ok(self)
        } else {
            Err(CryptoError::Replayed)
        }
    }
}
