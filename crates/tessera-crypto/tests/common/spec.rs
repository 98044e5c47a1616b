//! `docs/envelope.md` v2 written again from the document with the primitives alone (BLAKE3,
//! X25519, ML-KEM-1024, XChaCha20-Poly1305): a second sealer that can also build the envelopes
//! no honest sender makes — a bad tag, someone else's certificate, a claim that is not the
//! certificate's, bad padding. Used by the frozen vectors (`testvec_envelope_v2.rs`) and, by
//! path, by the end-to-end test of a forged envelope (`tests/e2e/delivery.rs`).
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libcrux_ml_kem::mlkem1024;
use tessera_crypto::{EnvelopePublicKey, EpochSigningKey};

/// The vectors' fixed send time (2026-09-21), what [`Spec::new`] starts from.
pub const SENT_AT: u64 = 1_790_000_000_000;

pub fn h(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    for p in parts {
        hasher.update(p);
    }
    *hasher.finalize().as_bytes()
}

/// A link as the sender holds it (§1): its X25519 public key, ML-KEM ciphertext and secret.
pub struct SpecLink {
    pub lpk: [u8; 32],
    pub ct: Vec<u8>,
    pub secret: [u8; 32],
}

impl SpecLink {
    pub fn new(recipient: &EnvelopePublicKey, lsk: [u8; 32], m: [u8; 32]) -> Self {
        let pk = recipient.to_bytes();
        let ek_x: [u8; 32] = pk[..32].try_into().unwrap();
        let ek_m: [u8; 1568] = pk[32..].try_into().unwrap();
        let lsk = x25519_dalek::StaticSecret::from(lsk);
        let lpk = *x25519_dalek::PublicKey::from(&lsk).as_bytes();
        let ss_x = lsk.diffie_hellman(&x25519_dalek::PublicKey::from(ek_x));
        let (ct, ss_m) = mlkem1024::encapsulate(&mlkem1024::MlKem1024PublicKey::from(ek_m), m);
        let ct = ct.as_ref().to_vec();
        let secret = h(
            "tessera v2 envelope link secret",
            &[&ss_m, ss_x.as_bytes(), &recipient.key_id(), &lpk, &ct],
        );
        Self { lpk, ct, secret }
    }

    pub fn id(&self, recipient: &EnvelopePublicKey) -> [u8; 16] {
        let key_id = recipient.key_id();
        h(
            "tessera v2 envelope link id",
            &[&key_id, &self.lpk, &self.ct],
        )[..16]
            .try_into()
            .unwrap()
    }
}

/// Everything `spec_seal` puts in an envelope; the `bad_*` fields make broken ones.
pub struct Spec<'a> {
    pub recipient: &'a EnvelopePublicKey,
    pub sender: &'a EpochSigningKey,
    pub link: &'a SpecLink,
    pub full: bool,
    pub id: [u8; 16],
    pub sent_at: u64,
    pub content: &'a [u8],
    pub ack: Option<[u8; 16]>,
    /// Certificate bytes to carry instead of the sender's (still MACed correctly).
    pub certificate: Option<Vec<u8>>,
    /// Include the certificate in a short envelope, or leave it out of a full one.
    pub flip_certificate_presence: bool,
    pub flags_extra: u8,
    pub claim_device: Option<u32>,
    /// The account to claim instead of the sender's.
    pub claim_account: Option<[u8; 32]>,
    pub bad_tag: bool,
    pub nonzero_padding: bool,
    pub oversized_padding: bool,
}

impl<'a> Spec<'a> {
    pub fn new(
        recipient: &'a EnvelopePublicKey,
        sender: &'a EpochSigningKey,
        link: &'a SpecLink,
        full: bool,
        content: &'a [u8],
        r: &mut impl rand::RngCore,
    ) -> Self {
        let mut id = [0u8; 16];
        r.fill_bytes(&mut id);
        Self {
            recipient,
            sender,
            link,
            full,
            id,
            sent_at: SENT_AT,
            content,
            ack: None,
            certificate: None,
            flip_certificate_presence: false,
            flags_extra: 0,
            claim_device: None,
            claim_account: None,
            bad_tag: false,
            nonzero_padding: false,
            oversized_padding: false,
        }
    }
}

pub fn padded_len(u: usize) -> usize {
    if u <= 256 {
        256
    } else if u <= 16384 {
        u.next_power_of_two()
    } else {
        u.div_ceil(16384) * 16384
    }
}

/// `docs/envelope.md` §2–§5, step by step.
pub fn spec_seal(s: &Spec<'_>) -> Vec<u8> {
    let pk = s.recipient.to_bytes();
    let (ek_x, ek_m): ([u8; 32], &[u8]) = (pk[..32].try_into().unwrap(), &pk[32..]);
    let key_id = s.recipient.key_id();
    // §2.
    let mut header = vec![2, if s.full { 1 } else { 2 }];
    header.extend_from_slice(&s.id);
    header.extend_from_slice(&key_id);
    if s.full {
        header.extend_from_slice(&s.link.lpk);
        header.extend_from_slice(&s.link.ct);
    } else {
        header.extend_from_slice(&s.link.id(s.recipient));
    }
    // §3 steps 3–4.
    let th = h("tessera v2 envelope transcript", &[&header, &ek_x, ek_m]);
    let mut okm = [0u8; 56];
    let mut kdf = blake3::Hasher::new_derive_key("tessera v2 envelope keys");
    kdf.update(&s.link.secret);
    kdf.update(&th);
    kdf.finalize_xof().fill(&mut okm);
    // §4.
    let with_certificate = s.full != s.flip_certificate_presence;
    let mut flags = s.flags_extra;
    if with_certificate {
        flags |= 1;
    }
    if s.ack.is_some() {
        flags |= 2;
    }
    let sender = s.sender;
    let mut fixed = vec![flags];
    fixed.extend_from_slice(&s.claim_account.unwrap_or(sender.account_id().0));
    fixed.extend_from_slice(&s.claim_device.unwrap_or(sender.device_id()).to_be_bytes());
    fixed.extend_from_slice(&sender.epoch_id());
    fixed.extend_from_slice(&s.sent_at.to_be_bytes());
    let mut cert_part = Vec::new();
    if with_certificate {
        let cert = s
            .certificate
            .clone()
            .unwrap_or_else(|| sender.certificate().to_bytes());
        cert_part.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        cert_part.extend_from_slice(&cert);
    }
    let ack_part = s.ack.map(|a| a.to_vec()).unwrap_or_default();
    let mut content_part = (s.content.len() as u32).to_be_bytes().to_vec();
    content_part.extend_from_slice(s.content);
    // §5: the pair key from the epoch secret and the recipient's X25519 key.
    let e = x25519_dalek::StaticSecret::from(*sender.secret());
    let big_e = x25519_dalek::PublicKey::from(&e);
    let shared = e.diffie_hellman(&x25519_dalek::PublicKey::from(ek_x));
    let k = h(
        "tessera v1 envelope sender key",
        &[shared.as_bytes(), big_e.as_bytes(), &ek_x],
    );
    let digest = h(
        "tessera v2 envelope sender",
        &[&header, &fixed, &cert_part, &ack_part, &content_part],
    );
    let mut tag = *blake3::keyed_hash(&k, &digest).as_bytes();
    if s.bad_tag {
        tag[0] ^= 1;
    }
    let mut plaintext = fixed;
    plaintext.extend_from_slice(&tag);
    plaintext.extend_from_slice(&cert_part);
    plaintext.extend_from_slice(&ack_part);
    plaintext.extend_from_slice(&content_part);
    let mut padded = padded_len(plaintext.len());
    if s.oversized_padding {
        padded *= 2;
    }
    plaintext.resize(padded, 0);
    if s.nonzero_padding {
        *plaintext.last_mut().unwrap() = 1;
    }
    // §3 step 5.
    let cipher = XChaCha20Poly1305::new(okm[..32].into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&okm[32..]),
            Payload {
                msg: &plaintext,
                aad: &header,
            },
        )
        .unwrap();
    let mut bytes = header;
    bytes.extend_from_slice(&ciphertext);
    bytes
}
